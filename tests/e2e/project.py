"""The project files the README's streaming examples assume a snapshot has
(`make build`, `python server.py`, `python train.py`, ...), written into
every sandbox a wrapped client creates — the README code itself runs
unchanged."""

from __future__ import annotations

from typing import Any

MAKEFILE = """\
build:
\t@echo "compiling module 1"
\t@sleep 0.3
\t@echo "warning: unused variable" >&2
\t@sleep 0.3
\t@echo "compiling module 2"
\t@sleep 0.3
\t@echo "linking"
"""

SERVER = """\
import sys, time
print("Starting...", flush=True)
time.sleep(0.2)
print("Ready", flush=True)
while True:
    time.sleep(1)
"""

TRAIN = """\
import time
for epoch in range(3):
    print(f"epoch {epoch}", flush=True)
    time.sleep(0.2)
"""

FILES = {
    "/home/user/Makefile": MAKEFILE,
    "/home/user/server.py": SERVER,
    "/home/user/train.py": TRAIN,
    "/home/user/background_job.py": TRAIN,
}

BUILD_STDOUT = "compiling module 1\ncompiling module 2\nlinking\n"
BUILD_STDERR = "warning: unused variable\n"


class ProjectClient:
    """A SandboxClient whose new sandboxes already hold the project files."""

    def __init__(self, client: Any):
        self._client = client
        self.created: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _prepare(self, sb: Any) -> Any:
        for path, content in FILES.items():
            sb.write(path, content)
        self.created.append(sb)
        return sb

    def sandbox(self, *args: Any, **kwargs: Any) -> Any:
        return self._prepare(self._client.sandbox(*args, **kwargs))

    def create_sandbox(self, *args: Any, **kwargs: Any) -> Any:
        return self._prepare(self._client.create_sandbox(*args, **kwargs))
