"""Wire-compatibility smoke check: the real `langsmith` SDK against a bare agent.

Usage (the agent binary path is required; ports are picked free):

    /tmp/venv/bin/python crates/agent/tests/sdk_smoke.py target/debug/sandpit-agent
    LANGSMITH_FEATURES=sandbox_sse_exec /tmp/venv/bin/python crates/agent/tests/sdk_smoke.py ...
    /tmp/venv07/bin/python crates/agent/tests/sdk_smoke.py ...   # langsmith 0.7.x

Exits non-zero on the first failed check. Not run by `cargo test`; the
end-to-end suites drive the SDK through the real server.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import langsmith
from langsmith.sandbox import Sandbox, SandboxClient

SSE = "sandbox_sse_exec" in os.environ.get("LANGSMITH_FEATURES", "")
V07 = langsmith.__version__.startswith("0.7")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(binary, workdir):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--listen", f"tcp:127.0.0.1:{port}", "--workdir", workdir]
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("agent did not start")


def sandbox(port):
    client = SandboxClient(api_endpoint="http://127.0.0.1:1/api/v2/sandboxes", api_key="k")
    kwargs = {"template_name": "t"} if V07 else {}
    return Sandbox(name="x", dataplane_url=f"http://127.0.0.1:{port}", _client=client, **kwargs)


def check(label, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + label + (f": {detail}" if detail else ""))
    if not condition:
        raise SystemExit(1)


def common_checks(sb, workdir):
    r = sb.run("echo hello; echo oops >&2; exit 3")
    check("run", (r.stdout, r.stderr, r.exit_code) == ("hello\n", "oops\n", 3), r)
    sb.write("sub/dir/f.txt", "hi there\nsecond hi\n")
    check("write/read", sb.read("sub/dir/f.txt") == b"hi there\nsecond hi\n")
    check("read relative to workdir", os.path.exists(os.path.join(workdir, "sub/dir/f.txt")))
    try:
        sb.read("missing.txt")
        check("read missing raises", False)
    except Exception as e:  # ResourceNotFoundError
        check("read missing raises ResourceNotFoundError", type(e).__name__ == "ResourceNotFoundError", e)


def v015_checks(sb, workdir):
    from langsmith.sandbox._exceptions import CommandTimeoutError

    h = sb.run("for i in 1 2 3; do echo line $i; sleep 0.2; done", wait=False)
    chunks = list(h)
    check("wait=False iteration", [c.data for c in chunks] == ["line 1\n", "line 2\n", "line 3\n"], chunks)
    check("offsets", [c.offset for c in chunks] == [0, 7, 14])
    check("result", h.result.exit_code == 0)

    try:
        sb.run("sleep 5", timeout=1)
        check("timeout raises", False)
    except CommandTimeoutError:
        check("timeout raises CommandTimeoutError", True)

    h = sb.run("for i in 1 2 3 4 5; do echo r$i; sleep 0.2; done", wait=False)
    first = next(iter(h))
    time.sleep(1.3)
    again = sb.reconnect(h.command_id, stdout_offset=h.last_stdout_offset)
    check("reconnect", first.data + again.result.stdout == "r1\nr2\nr3\nr4\nr5\n", again.result)

    big = sb.run("head -c 20000000 /dev/zero | tr '\\0' a")
    check("20 MB output", len(big.stdout) == 20_000_000 and set(big.stdout) == {"a"})

    st = sb.stat("sub/dir/f.txt")
    check("stat", st.size_bytes == 19 and st.etag, st)
    part = sb.read_range("sub/dir/f.txt", start=3, end=7)
    check("read_range", part.content == b"there" and part.partial and part.total_bytes == 19, part)
    check("if_none_match", sb.read_range("sub/dir/f.txt", start=0, if_none_match=st.etag).unchanged)
    g = sb.glob("**/*.txt", workdir)
    check("glob", [m.path for m in g] == [os.path.join(workdir, "sub/dir/f.txt")], g)
    gr = sb.grep("hi", workdir, glob="*.txt")
    check("grep", [(m.line, m.text) for m in gr] == [(1, "hi there"), (2, "second hi")], gr)

    if SSE:
        return
    h = sb.run("echo start; sleep 30", timeout=60, wait=False)
    threading.Timer(0.5, h.kill).start()
    began = time.time()
    try:
        for _ in h:
            pass
    except Exception:
        pass  # the SDK closes its socket on kill(), so iteration may raise
    check("kill", time.time() - began < 5)

    h = sb.run('read name; echo "Hello $name"', wait=False, close_input=False)
    h.send_input("World\n")
    check("send_input", h.result.stdout == "Hello World\n", h.result)

    h = sb.run("cat; echo done", wait=False, close_input=False)
    h.send_input("abc\n")
    h.close_input()
    check("close_input", h.result.stdout == "abc\ndone\n", h.result)

    r = sb.run("tty", pty=True)
    check("pty tty", r.stdout.startswith("/dev/pts/"), r)
    h = sb.run("python3 -q", pty=True, wait=False)
    for chunk in h:
        if ">>>" in chunk.data:
            h.send_input("print('hel' + 'lo')\n")
            break
    for chunk in h:
        if ">>>" in chunk.data:
            h.send_input("exit()\n")
            break
    check("pty repl", "hello\r\n" in h.result.stdout, h.result)


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_agent(binary, workdir)
        try:
            sb = sandbox(port)
            common_checks(sb, workdir)
            if V07:
                r = sb._run_http("echo $X; pwd", timeout=10, env={"X": "y"}, cwd="/tmp", shell="/bin/bash", headers=None)
                check("0.7 blocking /execute", (r.stdout, r.exit_code) == ("y\n/tmp\n", 0), r)
            else:
                v015_checks(sb, workdir)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print("all checks passed")


if __name__ == "__main__":
    main()
