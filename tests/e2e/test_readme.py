"""The README sections issue 2 names run unchanged against Sandpit and print
what the README says: "Quick Start", "Running Commands", "File Operations"."""

from __future__ import annotations

from readme import run_section, section_code


def test_sections_are_present():
    for title in ("Quick Start", "Running Commands", "File Operations"):
        assert section_code(title), title


def test_quick_start(client):
    # The example attaches to an existing sandbox called "your-sandbox".
    before = {sb.name for sb in client.list_sandboxes()}
    existing = client.create_sandbox(name="your-sandbox")
    try:
        namespace: dict = {}
        printed = run_section("Quick Start", namespace)
        assert printed == ["4\n", True]
        # `with client.sandbox()` deleted its sandbox, the explicit one was
        # deleted by the example, and "your-sandbox" is still there.
        names = {sb.name for sb in client.list_sandboxes()}
        assert names == before | {"your-sandbox"}
        assert namespace["result"].stdout == "4\n"
    finally:
        client.delete_sandbox(existing.name)


def test_running_commands(client):
    printed = run_section("Running Commands", {"client": client, "snapshot_id": None})
    assert printed == ["Hello, World!\n", "", 0, True, False, 1]


def test_file_operations(client):
    before = client.list_sandboxes()
    printed = run_section("File Operations", {"client": client, "snapshot_id": None})
    assert printed == ["Hello from file!\n", "print('Hello from file!')"]
    assert [sb.name for sb in client.list_sandboxes()] == [sb.name for sb in before]


def test_default_runtime_has_host_python(client):
    with client.sandbox() as sb:
        result = sb.run("python3 -c 'import sys; print(sys.version_info[0])'")
        assert result.stdout == "3\n"
        assert sb.run("python --version").exit_code == 0
