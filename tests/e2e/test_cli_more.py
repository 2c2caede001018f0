"""The `sandpit` verbs added after the first CLI round, against a real
server: `url` (its browser_url really serves a page from inside the
sandbox), `snapshot create|ls|get|rm|capture` with images from a registry
on loopback, `template create|ls|get|rm` and `create --template`, progress
display only on a terminal, and clear errors with a non-zero exit.

The module runs its own `sandpit serve` with `--insecure-registry` for the
fixture registry it starts (see test_images.py).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pty
import secrets
import select
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import sandpit_binary
from registry import build_image


@pytest.fixture(scope="module")
def busybox(registry, workdir):
    return build_image(registry, workdir, "clibox:1", files={"/etc/marker": "cli-image\n"})


@pytest.fixture(scope="module")
def srv(registry_server):
    return registry_server


@pytest.fixture(scope="module")
def env(srv, workdir):
    """Only a saved login (no LANGSMITH_* variables)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH_")}
    e["SANDPIT_CONFIG"] = str(workdir / "cfg" / "config.json")
    out = subprocess.run(
        [sandpit_binary(), "login", "--endpoint", srv.endpoint, "--api-key", srv.api_key],
        env=e, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return e


def sp(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sandpit_binary(), *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def ok_json(env, *args):
    out = sp(env, *args, "--json")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stderr and "\r" not in out.stderr  # no progress when piped
    return json.loads(out.stdout) if out.stdout.strip() else None


def fails(env, *args, code=1) -> str:
    out = sp(env, *args)
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.strip(), "an error must say what went wrong"
    return out.stderr


@pytest.fixture
def box(env):
    name = "c2-" + secrets.token_hex(3)
    assert sp(env, "create", name).returncode == 0
    yield name
    sp(env, "rm", name)


# --- url ---------------------------------------------------------------


@pytest.fixture
def loopback_localhost(monkeypatch):
    """Resolve `*.localhost` to loopback, as browsers do (glibc does not)."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kw):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def serve_page(env, box: str, tmp_path: Path, port: int) -> str:
    page = f"<h1>hello from {box} {secrets.token_hex(4)}</h1>\n"
    (tmp_path / "index.html").write_text(page)
    assert sp(env, "cp", str(tmp_path / "index.html"), f"{box}:/srv/www/index.html").returncode == 0
    start = sp(env, "exec", box, "--", f"cd /srv/www && setsid nohup python3 -m http.server {port} >/dev/null 2>&1 &")
    assert start.returncode == 0, start.stderr
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""
    deadline = time.monotonic() + 15
    while sp(env, "exec", box, "--", probe).returncode != 0:
        assert time.monotonic() < deadline, "the page server did not start"
        time.sleep(0.2)
    return page


def test_url_browser_link_serves_a_page_from_the_sandbox(env, box, tmp_path, loopback_localhost):
    page = serve_page(env, box, tmp_path, 8000)
    url = ok_json(env, "url", box, "8000", "--expires", "2h")
    assert set(url) == {"browser_url", "service_url", "token", "expires_at"}
    expires = datetime.datetime.fromisoformat(url["expires_at"].replace("Z", "+00:00"))
    left = expires - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=1, minutes=58) < left <= datetime.timedelta(hours=2)
    # A fresh client with no API key, following the login redirect like a browser.
    with httpx.Client(follow_redirects=True) as browser:
        resp = browser.get(url["browser_url"])
        assert resp.status_code == 200 and resp.text == page
        assert browser.get(url["browser_url"].split("/_svc/")[0] + "/index.html").text == page
    # Human output: the link alone on stdout, so `$(sandpit url ...)` works.
    human = sp(env, "url", box, "8000")
    assert human.returncode == 0 and "expires at" in human.stderr
    link = human.stdout.strip()
    assert "\n" not in link and "/_svc/auth?token=" in link
    with httpx.Client(follow_redirects=True) as browser:
        assert browser.get(link).text == page


def test_url_errors(env, box):
    assert "not found" in fails(env, "url", "no-such-box", "8000").lower()
    for port in ("0", "70000", "http"):
        err = fails(env, "url", box, port, code=2)
        assert "PORT" in err and port in err
    err = fails(env, "url", box, "8000", "--expires", "2d")
    assert "expires_in_seconds must be between 1 and 86400" in err
    assert "not a duration" in fails(env, "url", box, "8000", "--expires", "soon", code=2)


# --- snapshots ---------------------------------------------------------


def test_snapshot_create_ls_get_boot_rm(env, busybox):
    snap = ok_json(env, "snapshot", "create", "cli-bb", "--image", busybox, "--fs-capacity", "1GiB")
    assert snap["status"] == "ready" and snap["name"] == "cli-bb"
    assert snap["tags"] == ["1", "latest"] and snap["fs_capacity_bytes"] == 1 << 30
    assert snap["image_digest"].startswith("sha256:") and snap["docker_image"] == busybox
    listed = ok_json(env, "snapshot", "ls", "--name", "CLI-B")
    assert [s["id"] for s in listed] == [snap["id"]]
    assert ok_json(env, "snapshot", "ls", "--name", "nothing-like-it") == []
    table = sp(env, "snapshot", "ls")
    assert table.stdout.startswith("NAME") and snap["id"] in table.stdout and "1GiB" in table.stdout
    assert ok_json(env, "snapshot", "get", "cli-bb:1")["id"] == snap["id"]
    human = sp(env, "snapshot", "get", snap["id"]).stdout
    assert "status:      ready" in human and snap["image_digest"] in human
    name = "c2-snap-" + secrets.token_hex(3)
    assert sp(env, "create", name, "--snapshot", "cli-bb:1").returncode == 0
    try:
        out = sp(env, "exec", name, "--", "cat /etc/marker")
        assert (out.returncode, out.stdout) == (0, "cli-image\n"), out.stderr
    finally:
        sp(env, "rm", name)
    rm = sp(env, "snapshot", "rm", "cli-bb:1")
    assert rm.returncode == 0 and "deleted snapshot" in rm.stderr
    assert "not found" in fails(env, "snapshot", "get", snap["id"]).lower()
    assert "not found" in fails(env, "snapshot", "rm", snap["id"]).lower()


def test_snapshot_of_a_missing_image_fails_clearly(env, registry):
    err = fails(env, "snapshot", "create", "cli-missing", "--image", f"{registry.host}/nope:1")
    assert "cli-missing" in err and "failed" in err and "not found" in err
    failed = ok_json(env, "snapshot", "ls", "--name", "cli-missing")
    assert [s["status"] for s in failed] == ["failed"] and failed[0]["status_message"]
    ok_json(env, "snapshot", "rm", failed[0]["id"])
    # Validation errors come back as the API words them, before any pull.
    err = fails(env, "snapshot", "create", "bad name", "--image", "x:1")
    assert "422" in err and "Invalid name" in err
    assert "not a size" in fails(env, "snapshot", "create", "n", "--image", "x", "--fs-capacity", "big", code=2)


def test_snapshot_no_wait_returns_building(env, registry, workdir):
    image = build_image(registry, workdir, "nowait:1", files={"/n": "n\n"})
    snap = ok_json(env, "snapshot", "create", "cli-nowait", "--image", image, "--no-wait")
    assert snap["status"] in ("building", "ready")
    deadline = time.monotonic() + 60
    while ok_json(env, "snapshot", "get", snap["id"])["status"] == "building":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert ok_json(env, "snapshot", "get", snap["id"])["status"] == "ready"
    ok_json(env, "snapshot", "rm", snap["id"])


def test_snapshot_capture_of_a_running_sandbox(env, busybox):
    base = ok_json(env, "snapshot", "create", "cli-base", "--image", busybox)
    name = "c2-cap-" + secrets.token_hex(3)
    assert sp(env, "create", name, "--snapshot", base["id"]).returncode == 0
    try:
        assert sp(env, "exec", name, "--", "mkdir -p /opt && echo captured > /opt/state").returncode == 0
        cap = ok_json(env, "snapshot", "capture", name, "cli-cap", "--tag", "v1")
        assert cap["status"] == "ready" and cap["tags"] == ["v1"]
        sandbox_id = ok_json(env, "get", name)["id"]
        assert cap["source_sandbox_id"] == sandbox_id
    finally:
        sp(env, "rm", name)
    again = "c2-cap2-" + secrets.token_hex(3)
    assert sp(env, "create", again, "--snapshot", "cli-cap:v1").returncode == 0
    try:
        assert sp(env, "exec", again, "--", "cat /opt/state").stdout == "captured\n"
    finally:
        sp(env, "rm", again)
    assert "not found" in fails(env, "snapshot", "capture", "no-such-box", "x").lower()
    for ref in (cap["id"], base["id"]):
        ok_json(env, "snapshot", "rm", ref)


# --- templates ---------------------------------------------------------


def test_template_verbs_and_create_from_a_template(env):
    tpl = ok_json(env, "template", "create", "cli-tpl", "--image", "host", "--cpu", "1", "--memory", "256Mi")
    assert (tpl["name"], tpl["image"]) == ("cli-tpl", "host")
    assert tpl["resources"]["cpu"] == "1" and tpl["resources"]["memory"] == "256Mi"
    assert [t["name"] for t in ok_json(env, "template", "ls")] == ["cli-tpl"]
    table = sp(env, "template", "ls").stdout
    assert table.startswith("NAME") and "cli-tpl" in table and "256Mi" in table
    assert ok_json(env, "template", "get", "cli-tpl")["id"] == tpl["id"]
    name = "c2-tpl-" + secrets.token_hex(3)
    made = ok_json(env, "create", name, "--template", "cli-tpl")
    try:
        assert made["template_name"] == "cli-tpl" and made["mem_bytes"] == 256 << 20
        err = fails(env, "template", "rm", "cli-tpl")
        assert "409" in err and "in use" in err and name in err
    finally:
        sp(env, "rm", name)
    assert sp(env, "template", "rm", "cli-tpl").returncode == 0
    assert "not found" in fails(env, "template", "get", "cli-tpl").lower()
    err = fails(env, "template", "create", "tiny", "--image", "host", "--memory", "1Ki")
    assert "422" in err and "memory must be at least 16Mi" in err
    assert "VOLUME:/absolute/path" in fails(env, "template", "create", "v", "--image", "host", "--volume", "x", code=2)


# --- progress ----------------------------------------------------------


def run_with_tty_stderr(env, *args, timeout=120) -> tuple[int, str, bytes]:
    """Run with stderr on a pseudo-terminal and stdout on a pipe; returns
    (exit code, stdout, raw terminal bytes)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sandpit_binary(), *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.communicate(timeout=10)[0].decode()
    return proc.returncode, out, seen


def test_progress_is_drawn_on_a_terminal_only(env, box, registry, workdir, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 48)
    code, _, tty = run_with_tty_stderr(env, "cp", str(big), f"{box}:/tmp/big.bin")
    assert code == 0
    assert b"48.00 MiB" in tty and b"\x1b[" in tty  # the bar, drawn and cleared
    code, _, tty = run_with_tty_stderr(env, "cp", f"{box}:/tmp/big.bin", str(tmp_path / "back.bin"))
    # A fast download may end before the bar's first tick; the summary
    # line still reports the size on the terminal.
    assert code == 0 and b"\x1b[" in tty and b"(48.00 MiB)" in tty
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    piped = sp(env, "cp", str(big), f"{box}:/tmp/big2.bin")
    assert piped.returncode == 0 and piped.stderr == "copied 1 files, 50331648 bytes (48.00 MiB)\n"
    image = build_image(registry, workdir, "spin:1", files={"/s": "s\n"})
    code, out, tty = run_with_tty_stderr(env, "snapshot", "create", "cli-spin", "--image", image, "--json")
    assert code == 0 and json.loads(out)["status"] == "ready" and tty == b""  # --json: never
    code, out, tty = run_with_tty_stderr(env, "snapshot", "create", "cli-spin2", "--image", image)
    assert code == 0 and "status:      ready" in out
    assert f"pulling {image}".encode() in tty
    for ref in ("cli-spin", "cli-spin2"):
        ok_json(env, "snapshot", "rm", ref)
