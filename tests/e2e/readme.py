"""Run the code examples of the installed SDK's `langsmith/sandbox/README.md`
unchanged, checking what they print against what the README says they print.

A line `print(expr)  # <python literal>` in an example states its expected
output; `run_section` records every printed value and compares each such line
(`# e.g. ...` and other prose comments are not literals and are skipped).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any


def readme_text() -> str:
    import langsmith.sandbox

    return (Path(langsmith.sandbox.__file__).parent / "README.md").read_text()


def section_code(title: str, text: str | None = None) -> list[str]:
    """The ```python blocks under the heading `title` (any level), up to the
    next heading of the same or a higher level."""
    text = text if text is not None else readme_text()
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(rf"^#+ {re.escape(title)}\s*$", l))
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    end = next(
        (i for i in range(start + 1, len(lines))
         if re.match(r"^#+ ", lines[i]) and len(lines[i]) - len(lines[i].lstrip("#")) <= level
         and not _inside_fence(lines, i)),
        len(lines),
    )
    body = "\n".join(lines[start + 1 : end])
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def _inside_fence(lines: list[str], index: int) -> bool:
    return sum(1 for l in lines[:index] if l.startswith("```")) % 2 == 1


def expected_prints(code: str) -> dict[int, Any]:
    """{line number: expected value or ...} for every print statement."""
    out: dict[int, Any] = {}
    for number, line in enumerate(code.splitlines(), start=1):
        m = re.match(r"^\s*print\((.*)\)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        comment = (m.group(2) or "").strip()
        try:
            out[number] = ast.literal_eval(comment) if comment else ...
        except (ValueError, SyntaxError):
            out[number] = ...
    return out


class Printed(list):
    """Values printed by `print(...)` statements of an example, in order;
    `.output` is everything printed (callbacks too), as print would write it."""

    output: str = ""


def run_section(title: str, namespace: dict[str, Any]) -> Printed:
    """Execute every block of `title` in `namespace`; return the values its
    print statements printed, after asserting the ones the README states
    (a `# <literal>` comment) and that every print statement ran."""
    printed = Printed()
    scope = dict(namespace)
    try:
        _run_blocks(title, scope, printed)
    finally:
        namespace.update({k: v for k, v in scope.items() if k != "print"})
    return printed


def _run_blocks(title: str, scope: dict[str, Any], printed: Printed) -> None:
    for index, code in enumerate(section_code(title)):
        expected = expected_prints(code)
        ran: set[int] = set()
        filename = f"README:{title}:{index}"

        def fake_print(*args, sep=" ", end="\n", file=None, flush=False, _name=filename, _expected=expected, _ran=ran):
            printed.output += sep.join(str(a) for a in args) + end
            caller = sys._getframe(1)
            if caller.f_code.co_filename != _name or caller.f_lineno not in _expected:
                return
            value = args[0] if len(args) == 1 else args
            want = _expected[caller.f_lineno]
            assert want is ... or value == want, f"{_name} line {caller.f_lineno} printed {value!r}, README says {want!r}"
            _ran.add(caller.f_lineno)
            printed.append(value)

        scope["print"] = fake_print
        exec(compile(code, filename, "exec"), scope)
        assert ran == set(expected), f"print statements that never ran: {set(expected) - ran}"
