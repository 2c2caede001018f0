"""Run the code examples of the installed SDK's `langsmith/sandbox/README.md`
unchanged, checking what they print against what the README says they print.

A line `print(expr)  # <python literal>` in an example states its expected
output; `run_section` records every printed value and compares each such line
(`# e.g. ...` and other prose comments are not literals and are skipped).
"""

from __future__ import annotations

import ast
import re
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


def expected_prints(code: str) -> list[tuple[str, Any]]:
    """(expression, expected value or ...) for every print line, in order."""
    out = []
    for line in code.splitlines():
        m = re.match(r"^\s*print\((.*)\)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        expr, comment = m.group(1), (m.group(2) or "").strip()
        try:
            value = ast.literal_eval(comment) if comment else ...
        except (ValueError, SyntaxError):
            value = ...
        out.append((expr, value))
    return out


def run_section(title: str, namespace: dict[str, Any]) -> list[Any]:
    """Execute every block of `title` in `namespace`; return printed values
    after asserting the ones the README states."""
    printed: list[Any] = []

    def fake_print(*args, **kwargs):
        printed.append(args[0] if len(args) == 1 else args)

    expected: list[tuple[str, Any]] = []
    for code in section_code(title):
        expected.extend(expected_prints(code))
        exec(compile(code, f"README:{title}", "exec"), {**namespace, "print": fake_print}, namespace)
    assert len(printed) == len(expected), (printed, expected)
    for (expr, want), got in zip(expected, printed):
        if want is not ...:
            assert got == want, f"print({expr}) printed {got!r}, README says {want!r}"
    return printed
