"""The unmodified `opensandbox-code-interpreter==1.1.1` SDK against
`sandpit serve`: its README examples (sync and async), state kept between
runs, streaming callbacks, the last expression's result, errors with
tracebacks, interrupts, contexts list/get/delete, and errors in
OpenSandbox's `{"code", "message"}` shape (wrong key 401, unknown sandbox
404, unsupported language 501).

Image: `host` instead of `opensandbox/code-interpreter` (Sandpit runs the
image's own `python3`); `domain`/`api_key` point at the test server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import httpx
import pytest

from code_interpreter import CodeInterpreter, CodeInterpreterSync, SupportedLanguage
from opensandbox import Sandbox, SandboxSync
from opensandbox.config import ConnectionConfig, ConnectionConfigSync
from opensandbox.exceptions import SandboxApiException, SandboxException
from opensandbox.models.execd import ExecutionHandlers

from test_opensandbox import assert_error, os_headers


def config(server) -> ConnectionConfig:
    return ConnectionConfig(
        domain=server.endpoint,
        api_key=server.api_key,
        request_timeout=timedelta(seconds=60),
    )


def config_sync(server) -> ConnectionConfigSync:
    return ConnectionConfigSync(
        domain=server.endpoint,
        api_key=server.api_key,
        request_timeout=timedelta(seconds=60),
        transport=httpx.HTTPTransport(limits=httpx.Limits(max_connections=20)),
    )


def test_readme_quick_start_async(server):
    async def main():
        sandbox = await Sandbox.create(
            "host",
            connection_config=config(server),
            env={
                "PYTHON_VERSION": "3.11",
                "JAVA_VERSION": "17",
                "NODE_VERSION": "20",
                "GO_VERSION": "1.24",
            },
        )
        async with sandbox:
            interpreter = await CodeInterpreter.create(sandbox=sandbox)
            context = await interpreter.codes.create_context(SupportedLanguage.PYTHON)
            result = await interpreter.codes.run(
                "import sys\nprint(sys.version)\nresult = 2 + 2\nresult",
                context=context,
            )
            assert result.result and result.result[0].text == "4"
            assert result.logs.stdout and result.logs.stdout[0].text[0].isdigit()
            assert result.execution_count == 1
            assert result.id == context.id
            assert result.error is None and result.complete is not None
            await sandbox.kill()

    asyncio.run(main())


def test_readme_quick_start_sync(server):
    sandbox = SandboxSync.create(
        "host",
        connection_config=config_sync(server),
        env={"PYTHON_VERSION": "3.11"},
    )
    with sandbox:
        interpreter = CodeInterpreterSync.create(sandbox=sandbox)
        result = interpreter.codes.run("result = 2 + 2\nresult")
        assert result.result and result.result[0].text == "4"
        # The default context keeps its state too.
        again = interpreter.codes.run("result * 10")
        assert again.result[0].text == "40"
        sandbox.kill()


def test_readme_usage_examples(server):
    """Usage examples 0, 2, 3 and 4 of the SDK README."""

    async def main():
        sandbox = await Sandbox.create("host", connection_config=config(server))
        async with sandbox:
            interpreter = await CodeInterpreter.create(sandbox=sandbox)
            # 0. Run with `language` (default language context).
            execution = await interpreter.codes.run(
                "result = 2 + 2\nresult",
                language=SupportedLanguage.PYTHON,
            )
            assert execution.result and execution.result[0].text == "4"
            await interpreter.codes.run("x = 42", language=SupportedLanguage.PYTHON)
            execution = await interpreter.codes.run("result = x\nresult", language=SupportedLanguage.PYTHON)
            assert execution.result and execution.result[0].text == "42"

            # 2. Python with state persistence.
            ctx = await interpreter.codes.create_context(SupportedLanguage.PYTHON)
            first = await interpreter.codes.run(
                "users = ['Alice', 'Bob', 'Charlie']\nprint(len(users))",
                context=ctx,
            )
            assert first.logs.stdout[0].text == "3\n" and not first.result
            result = await interpreter.codes.run(
                "users.append('Dave')\nprint(users)\nresult = users\nresult",
                context=ctx,
            )
            assert "".join(m.text for m in result.logs.stdout) == "['Alice', 'Bob', 'Charlie', 'Dave']\n"
            assert result.result[0].text == "['Alice', 'Bob', 'Charlie', 'Dave']"
            assert result.execution_count == 2
            # Contexts are separate namespaces.
            other = await interpreter.codes.run("'users' in dir()", language=SupportedLanguage.PYTHON)
            assert other.result[0].text == "False"

            # 3. Streaming output handling: each line arrives as it is printed.
            seen: list[tuple[float, str]] = []
            errs: list[str] = []

            async def on_stdout(msg):
                seen.append((time.monotonic(), msg.text))

            async def on_stderr(msg):
                errs.append(msg.text)

            handlers = ExecutionHandlers(on_stdout=on_stdout, on_stderr=on_stderr)
            started = time.monotonic()
            await interpreter.codes.run(
                "import time, sys\nfor i in range(5):\n    print(i)\n    time.sleep(0.5)\n"
                "print('to stderr', file=sys.stderr)",
                context=ctx,
                handlers=handlers,
            )
            assert "".join(t for _, t in seen).split() == ["0", "1", "2", "3", "4"]
            first_zero = next(at for at, t in seen if "0" in t)
            assert first_zero - started < 1.5, "the first line came only at the end"
            assert "".join(errs) == "to stderr\n"

            # 4. Other languages: a clear 501.
            with pytest.raises(SandboxException) as err:
                await interpreter.codes.create_context(SupportedLanguage.GO)
            assert "501" in str(err.value) or "not implemented" in str(err.value).lower()
            await sandbox.kill()

    asyncio.run(main())


def test_errors_results_and_interrupt(server):
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    with sandbox:
        interpreter = CodeInterpreterSync.create(sandbox=sandbox)
        codes = interpreter.codes
        ctx = codes.create_context(SupportedLanguage.PYTHON)
        failed = codes.run("def f():\n    return 1 / 0\n\nprint('before')\nf()", context=ctx)
        assert failed.error is not None
        assert (failed.error.name, failed.error.value) == ("ZeroDivisionError", "division by zero")
        tb = "\n".join(failed.error.traceback)
        assert "return 1 / 0" in tb and "Traceback" in tb and "<cell-" in tb
        assert "driver" not in tb
        assert failed.logs.stdout[0].text == "before\n"
        # A line written in pieces (an unbuffered print writes its newline
        # apart) is one stdout event, not one per write.
        pieces = codes.run(
            "import sys, time\nsys.stdout.write('par'); sys.stdout.flush(); time.sleep(0.01)\nprint('ts')",
            context=ctx,
        )
        assert [m.text for m in pieces.logs.stdout] == ["parts\n"]

        syntax = codes.run("def broken(:\n", context=ctx)
        assert syntax.error.name == "SyntaxError"
        name = codes.run("undefined_name", context=ctx)
        assert (name.error.name, name.error.value) == ("NameError", "name 'undefined_name' is not defined")

        # Output of child processes is captured; a None result is not shown.
        child = codes.run("import subprocess\nsubprocess.run('echo from child', shell=True)\nNone", context=ctx)
        assert "".join(m.text for m in child.logs.stdout) == "from child\n"
        assert not child.result
        # Rich objects: text/plain is the result's text.
        rich = codes.run(
            "class T:\n    def __repr__(self): return 'T()'\n    def _repr_html_(self): return '<b>T</b>'\nT()",
            context=ctx,
        )
        assert rich.result[0].text == "T()"

        # Interrupt a running cell: KeyboardInterrupt, and the state is kept.
        codes.run("kept = 'yes'", context=ctx)
        box: dict = {}

        def slow():
            box["run"] = codes.run("import time\ntime.sleep(60)", context=ctx)

        worker = threading.Thread(target=slow)
        started = time.monotonic()
        worker.start()
        time.sleep(1.5)
        codes.interrupt(ctx.id)
        worker.join(20)
        assert not worker.is_alive() and time.monotonic() - started < 20
        assert box["run"].error.name == "KeyboardInterrupt"
        assert codes.run("kept", context=ctx).result[0].text == "'yes'"
        sandbox.kill()


def test_contexts_list_get_delete(server):
    async def main():
        sandbox = await Sandbox.create("host", connection_config=config(server))
        async with sandbox:
            codes = (await CodeInterpreter.create(sandbox=sandbox)).codes
            a = await codes.create_context(SupportedLanguage.PYTHON)
            b = await codes.create_context(SupportedLanguage.PYTHON)
            listed = await codes.list_contexts(SupportedLanguage.PYTHON)
            assert {a.id, b.id} <= {c.id for c in listed}
            assert all(c.language == "python" for c in listed)
            got = await codes.get_context(a.id)
            assert (got.id, got.language) == (a.id, "python")

            await codes.delete_context(a.id)
            with pytest.raises(SandboxApiException) as err:
                await codes.get_context(a.id)
            assert err.value.status_code == 404
            with pytest.raises(SandboxException):
                await codes.run("1", context=a)
            with pytest.raises(SandboxApiException) as err:
                await codes.delete_context(a.id)
            assert err.value.status_code == 404

            await codes.delete_contexts(SupportedLanguage.PYTHON)
            assert await codes.list_contexts(SupportedLanguage.PYTHON) == []
            # The deleted interpreters are gone from the sandbox.
            ps = await sandbox.commands.run("ps -eo args | grep -c '[s]andpit-sync' || true")
            assert "".join(m.text for m in ps.logs.stdout).strip() == "0"
            await sandbox.kill()

    asyncio.run(main())


def test_raw_errors(server):
    """Wrong key 401, unknown sandbox 404, bad bodies 400, in OpenSandbox's
    error shape."""
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    try:
        base = f"{server.endpoint}/v1/sandboxes/{sandbox.id}/execd"
        resp = httpx.post(f"{base}/code/context", json={"language": "python"},
                          headers=os_headers(server, "wrong-key"))
        assert_error(resp, 401)
        resp = httpx.get(f"{base}/code/contexts?language=python")
        assert_error(resp, 401)
        resp = httpx.post(f"{server.endpoint}/v1/sandboxes/no-such-sandbox/execd/code/context",
                          json={"language": "python"}, headers=os_headers(server))
        assert_error(resp, 404)
        resp = httpx.post(f"{base}/code/context", json={"language": "cobol"}, headers=os_headers(server))
        assert_error(resp, 400, "INVALID_REQUEST")
        resp = httpx.post(f"{base}/code/context", json={"language": "java"}, headers=os_headers(server))
        assert_error(resp, 501, "NOT_IMPLEMENTED")
        resp = httpx.post(f"{base}/code", json={"code": "  "}, headers=os_headers(server))
        assert_error(resp, 400, "INVALID_REQUEST")
        resp = httpx.post(f"{base}/code", json={"code": "1", "context": {"id": "nope", "language": "python"}},
                          headers=os_headers(server))
        assert_error(resp, 404, "CONTEXT_NOT_FOUND")
        resp = httpx.delete(f"{base}/code?id=nope", headers=os_headers(server))
        assert_error(resp, 404, "CONTEXT_NOT_FOUND")
        resp = httpx.delete(f"{base}/code/contexts", headers=os_headers(server))
        assert_error(resp, 400, "INVALID_REQUEST")
    finally:
        sandbox.kill()
