"""Kernel objects a Sandpit server can leave behind, for before/after checks.

Each function returns a set of opaque strings; a leak is anything present
after the server stopped that was not present before it started.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroups() -> set[str]:
    """Cgroup directories under every hierarchy's `sandpit/` subtree."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        base = hierarchy / "sandpit"
        if base.is_dir():
            for child in base.iterdir():
                if child.is_dir():
                    found.add(str(child))
    return found


def veths() -> set[str]:
    """Host ends of sandbox veth pairs."""
    return {name for name in os.listdir("/sys/class/net") if name.startswith("spv")}


def mounts(marker: str) -> set[str]:
    """Host mounts whose mount point or source mentions `marker`."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return {line for line in lines if marker in line}


def sandbox_processes() -> set[str]:
    """Processes living in a `sandpit` cgroup (any hierarchy)."""
    found: set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if ":/sandpit/" in cgroup:
            found.add(pid)
    return found


def loop_devices(marker: str) -> set[str]:
    """Loop devices backed by a file under `marker` (the data dir), e.g. a
    sandbox's capacity-limited disk image."""
    found = set()
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            target = backing.read_text().strip()
        except OSError:
            continue
        if marker in target:
            found.add(f"{backing.parent.parent.name}:{target}")
    return found


def snapshot(marker: str) -> dict[str, set[str]]:
    return {
        "cgroups": cgroups(),
        "veths": veths(),
        "mounts": mounts(marker),
        "processes": sandbox_processes(),
        "loop_devices": loop_devices(marker),
    }


def leaked(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    return {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
