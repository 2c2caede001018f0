"""Two `sandpit serve` replicas behind one PostgreSQL database.

Only one server with a runtime may run per host (it owns host-wide cgroups,
links and the nftables table), so replica "a" is a real server that runs
every sandbox, and replica "b" runs with `--no-sandboxes`: it answers the
whole API, admits creates under the shared quota lock, places sandboxes on
"a" over the internal API, proxies data-plane traffic to "a", and competes
for leadership. Everything between the two goes through the same code as
between two hosts (the database, the internal API, HTTP proxying); what
this does not show is two replicas that both run sandboxes (ARCHITECTURE.md,
"Replicas").

Needs SANDPIT_E2E_DATABASE_URL (scripts/test starts a throwaway
PostgreSQL); each module run uses a fresh database in that cluster.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

import conftest
from helpers import new_tenant

DATABASE = os.environ.get("SANDPIT_E2E_DATABASE_URL")
pytestmark = pytest.mark.skipif(not DATABASE, reason="needs SANDPIT_E2E_DATABASE_URL (PostgreSQL)")

SCALE = 60  # --test-time-scale: a minute of retention is a second


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", "-qAt", url, "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Replica:
    def __init__(self, name: str, root: Path, database: str, secret: Path, no_sandboxes: bool, registry_host: str):
        self.name = name
        self.port = free_port()
        self.data_dir = root / name
        self.args = [
            "--database-url", database,
            "--shared-secret-file", str(secret),
            "--node-name", name,
            "--reconcile-interval-ms", "300",
            "--test-time-scale", str(SCALE),
            "--insecure-registry", registry_host,
        ] + (["--no-sandboxes"] if no_sandboxes else [])
        self.log: list[str] = []
        self.srv: conftest.Server | None = None

    def start(self) -> "Replica":
        self.srv = conftest._launch(self.data_dir, None, self.args, f"127.0.0.1:{self.port}", log=self.log)
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.endpoint}/api/v2/sandboxes"

    def stop(self) -> int:
        assert self.srv is not None
        if self.srv.proc.poll() is not None:
            return self.srv.proc.returncode
        return conftest._terminate(self.srv)

    def kill9(self) -> None:
        assert self.srv is not None
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait(30)

    def logged(self, text: str, since: int = 0) -> bool:
        return any(text in line for line in self.log[since:])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(registry):
    name = "replicas_" + secrets.token_hex(4)
    psql(DATABASE, f"CREATE DATABASE {name}")
    database = with_database(DATABASE, name)
    root = Path(tempfile.mkdtemp(prefix="sp-replicas-", dir="/tmp"))
    secret = root / "shared-secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    a = Replica("a", root, database, secret, no_sandboxes=False, registry_host=registry.host)
    b = Replica("b", root, database, secret, no_sandboxes=True, registry_host=registry.host)
    with conftest.host_free():
        a.start()
        # "a" leads: it started first and polls first.
        wait_for(lambda: a.logged("now the leader"), 20, "a to lead")
        b.start()
        try:
            yield a, b, database
        finally:
            codes = {r.name: r.stop() for r in (a, b)}
    shutil.rmtree(root, ignore_errors=True)
    psql(DATABASE, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert codes == {"a": 0, "b": 0}, (codes, a.log[-40:], b.log[-40:])


def headers(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


def create(replica: Replica, key: str, **body) -> httpx.Response:
    return httpx.post(f"{replica.api}/boxes", headers=headers(key), json=body, timeout=120)


def delete_all(replica: Replica, key: str) -> None:
    listed = httpx.get(f"{replica.api}/boxes", headers=headers(key), timeout=30).json()
    boxes = listed if isinstance(listed, list) else listed.get("sandboxes", listed.get("items", []))
    for box in boxes:
        r = httpx.delete(f"{replica.api}/boxes/{box['name']}", headers=headers(key), timeout=60)
        assert r.status_code in (200, 204, 404), r.text


def sdk(replica: Replica, key: str):
    from langsmith.sandbox import SandboxClient

    return SandboxClient(api_endpoint=replica.api, api_key=key)


def run(replica: Replica, key: str, name: str, command: str) -> str:
    """Run `command` with the SDK through `replica` (its data-plane URL
    is the replica's own); returns stdout."""
    with sdk(replica, key) as client:
        return client.get_sandbox(name).run(command, timeout=60).stdout


def terminal_status(replica: Replica, sandbox_id: str, ticket: str) -> int:
    """The status of a console terminal WebSocket handshake."""
    with socket.create_connection(("127.0.0.1", replica.port), timeout=20) as s:
        s.sendall(
            (
                f"GET /console-terminal/{sandbox_id}?ticket={ticket} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{replica.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status_line = s.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def test_shared_keys_and_admin_key(cluster):
    a, b, _ = cluster
    # One admin key for the cluster: "b" took the one "a" made.
    assert a.srv.api_key == b.srv.api_key
    for name in ("secrets.key", "egress/ca.crt", "egress/ca.key"):
        assert (a.data_dir / name).read_bytes() == (b.data_dir / name).read_bytes(), name
    r = httpx.get(f"{b.endpoint}/api/v1/admin/tenants", headers=headers(a.srv.api_key))
    assert r.status_code == 200, r.text
    # The internal API refuses callers without the cluster token.
    r = httpx.post(f"{a.endpoint}/internal/v1/cluster", json={"op": "destroy", "sandbox_id": "x"})
    assert r.status_code == 401, r.text
    r = httpx.post(
        f"{a.endpoint}/internal/v1/cluster",
        headers={"x-sandpit-cluster-token": "00" * 32},
        json={"op": "destroy", "sandbox_id": "x"},
    )
    assert r.status_code == 401, r.text


def test_concurrent_creates_at_the_quota_edge_across_replicas(cluster):
    a, b, _ = cluster
    _, key = new_tenant(a.srv, "quota", max_sandboxes=3)
    targets = [a, b] * 4
    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        results = list(
            pool.map(lambda r: create(r[1], key, name=f"q{r[0]}", wait_for_ready=False), enumerate(targets))
        )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 3 and codes.count(429) == 5, [(r.status_code, r.text[:120]) for r in results]
    # Admitted through both replicas, every one runs on "a".
    def statuses():
        return [
            httpx.get(f"{b.api}/boxes/{r.json()['name']}", headers=headers(key)).json()
            for r in results
            if r.status_code == 201
        ]

    try:
        wait_for(lambda: all(s["status"] == "ready" for s in statuses()), 60, "the admitted sandboxes to boot")
    except AssertionError as err:
        raise AssertionError((statuses(), a.log[-30:])) from err
    delete_all(b, key)


def test_a_sandbox_on_one_replica_is_used_through_the_other(cluster):
    a, b, _ = cluster
    _, key = new_tenant(a.srv, "dp")
    r = create(b, key, name="via-b", wait_for_ready=True)
    assert r.status_code == 201, r.text
    box = r.json()
    # Created through "b", runs on "a": exec through either replica.
    assert box["dataplane_url"].startswith(b.endpoint), box
    assert run(b, key, "via-b", "echo through-b") == "through-b\n"
    assert run(a, key, "via-b", "echo through-a") == "through-a\n"
    # A service token minted on "b" is accepted by "a" (shared keys).
    run(a, key, "via-b", "setsid python3 -m http.server 8000 --bind 127.0.0.1 </dev/null >/dev/null 2>&1 &")
    minted = httpx.post(f"{b.api}/boxes/via-b/service-url", headers=headers(key), json={"port": 8000})
    assert minted.status_code == 200, minted.text
    token = minted.json()["token"]
    path = urlsplit(minted.json()["service_url"]).path
    def fetch(replica):
        return httpx.get(f"{replica.endpoint}{path}", headers={"X-Langsmith-Sandbox-Service-Token": token}, timeout=20)
    wait_for(lambda: fetch(a).status_code == 200, 20, "the service on a")
    assert fetch(b).status_code == 200  # and through "b", proxied to "a"
    # Revoked through "b": "a" refuses it within a sync interval.
    r = httpx.post(f"{b.api}/boxes/via-b/service-url/revoke", headers=headers(key))
    assert r.status_code == 200, r.text
    wait_for(lambda: fetch(a).status_code == 401, 10, "a to refuse the revoked token")
    # A console terminal ticket issued by "b" is redeemed by "a" (the
    # terminal is proxied there), once.
    for issuer, opener in ((b, b), (b, a)):
        r = httpx.post(f"{issuer.endpoint}/api/v1/console/terminal-tickets", headers=headers(key), json={"sandbox": "via-b"})
        assert r.status_code == 200, r.text
        ticket = r.json()["ticket"]
        assert terminal_status(opener, box["id"], ticket) == 101
        assert terminal_status(opener, box["id"], ticket) == 401, "a ticket is spent once"
    # A download link minted on "b" works through either replica (one
    # shared key; "b" forwards it to "a", which runs the sandbox).
    run(a, key, "via-b", "echo linked > /tmp/linked.txt")
    link = httpx.post(f"{b.api}/boxes/via-b/download-url", headers=headers(key), json={"path": "/tmp/linked.txt"})
    assert link.status_code in (200, 201), link.text
    link_path = urlsplit(link.json()["download_url"]).path
    for replica in (a, b):
        got = httpx.get(f"{replica.endpoint}{link_path}", timeout=20)
        assert (got.status_code, got.text) == (200, "linked\n"), replica.name
    # Stop and delete through "b" reach the owner.
    r = httpx.post(f"{b.api}/boxes/via-b/stop", headers=headers(key), timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "stopped", r.text
    r = httpx.delete(f"{b.api}/boxes/via-b", headers=headers(key), timeout=60)
    assert r.status_code in (200, 204), r.text
    assert not (a.data_dir / "sandboxes" / box["id"]).exists()


def test_a_stream_through_one_replica_survives_a_restart_of_the_other(cluster):
    a, b, _ = cluster
    _, key = new_tenant(a.srv, "stream")
    box = create(a, key, name="streamer", wait_for_ready=True).json()
    chunks: list[str] = []

    def stream():
        with sdk(a, key) as client:
            handle = client.get_sandbox("streamer").run(
                "for i in 1 2 3 4 5 6; do echo $i; sleep 1; done", timeout=60, wait=False
            )
            for chunk in handle:
                chunks.append(chunk.data)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(stream)
        time.sleep(1)
        assert b.stop() == 0
        b.start()
        done.result(timeout=60)
    assert "".join(chunks) == "1\n2\n3\n4\n5\n6\n"
    # The restarted replica serves the sandbox again (proxied to "a").
    assert run(b, key, "streamer", "echo back") == "back\n"
    delete_all(a, key)


def test_a_pool_claimed_through_both_replicas_never_hands_out_one_member_twice(cluster):
    a, b, database = cluster
    _, key = new_tenant(a.srv, "pool")
    r = httpx.post(f"{b.api}/templates", headers=headers(key), json={"name": "fast", "image": "host", "resources": {"cpu": "500m", "memory": "256Mi"}})
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{b.api}/pools", headers=headers(key), json={"name": "warm", "template_name": "fast", "replicas": 2, "wait_for_ready": True, "timeout": 120}, timeout=150)
    assert r.status_code in (200, 201), r.text
    members = set(psql(database, "SELECT id FROM sandboxes WHERE name LIKE '\\_warm-%'").split())
    assert len(members) == 2, members
    targets = [a, b, a, b]
    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        results = list(
            pool.map(lambda r: create(r[1], key, name=f"p{r[0]}", template_name="fast", wait_for_ready=True), enumerate(targets))
        )
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    ids = [r.json()["id"] for r in results]
    assert len(set(ids)) == 4, ids
    claimed = [i for i in ids if i in members]
    assert len(claimed) >= 1 and len(set(claimed)) == len(claimed), (claimed, members)
    delete_all(a, key)
    r = httpx.delete(f"{a.api}/pools/warm", headers=headers(key), timeout=60)
    assert r.status_code in (200, 204), r.text


def test_opensandbox_sdk_through_the_replica_that_does_not_run_the_sandbox(cluster):
    """The OpenSandbox SDK pointed at "b": lifecycle calls and execd
    (commands, files) reach the sandbox on "a"."""
    from opensandbox import SandboxSync
    from opensandbox.config import ConnectionConfigSync

    a, b, _ = cluster
    _, key = new_tenant(a.srv, "osb")
    sandbox = SandboxSync.create("host", connection_config=ConnectionConfigSync(domain=b.endpoint, api_key=key))
    try:
        assert (a.data_dir / "sandboxes" / sandbox.id).exists(), "placed on a"
        assert sandbox.commands.run("echo via-b").logs.stdout[0].text.strip() == "via-b"
        sandbox.files.write_file("/tmp/os.txt", "from b")
        assert sandbox.files.read_file("/tmp/os.txt") == "from b"
        sandbox.pause()
        resumed = SandboxSync.resume(sandbox.id, connection_config=ConnectionConfigSync(domain=b.endpoint, api_key=key))
        assert resumed.files.read_file("/tmp/os.txt") == "from b"
        assert resumed.get_info().status.state == "Running"
    finally:
        sandbox.kill()
        sandbox.close()
    assert not (a.data_dir / "sandboxes" / sandbox.id).exists()


def test_failed_key_checks_through_a_replica_count_against_the_client_not_the_replica(cluster):
    """"b" proxies data-plane calls to "a", which checks the key: "a"
    throttles the client that failed (127.0.0.2), not "b"'s own address,
    so other clients of "b" (127.0.0.3) keep working; and a client cannot
    name its own address to "a" without the cluster token."""
    a, b, _ = cluster
    _, key = new_tenant(a.srv, "throttle")
    box = create(b, key, name="guarded", wait_for_ready=True).json()
    url = f"/dataplane/{box['id']}/execute"
    body = {"command": "echo ok", "timeout": 30}

    def client(source: str) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)

    with client("127.0.0.2") as attacker, client("127.0.0.3") as user:
        statuses = [attacker.post(f"{b.endpoint}{url}", headers=headers("sp_wrong"), json=body).status_code for _ in range(22)]
        assert statuses[:20] == [401] * 20 and statuses[-1] == 429, statuses
        r = user.post(f"{b.endpoint}{url}", headers=headers(key), json=body)
        assert r.status_code == 200, (r.status_code, r.text)
        # Straight to "a" with a made-up client address and no token: the
        # header is ignored, the attacker is still the one throttled.
        spoofed = {**headers("sp_wrong"), "x-sandpit-client-addr": "127.0.0.9", "x-sandpit-forwarded-by": "b"}
        assert attacker.post(f"{a.endpoint}{url}", headers=spoofed, json=body).status_code == 429
    delete_all(b, key)


def test_a_capture_through_the_other_replica_runs_where_the_sandbox_does(cluster):
    a, b, _ = cluster
    _, key = new_tenant(a.srv, "capture")
    with sdk(b, key) as client:
        sb = client.create_sandbox(name="to-capture")
        snap = None
        try:
            sb.run("echo captured-through-b > /home/user/kept.txt", timeout=60)
            snap = client.capture_snapshot("to-capture", "from-b", timeout=120)
            assert snap.status == "ready", snap
            clone = client.create_sandbox(snapshot_id=snap.id, name="from-capture")
            assert clone.run("cat /home/user/kept.txt", timeout=60).stdout == "captured-through-b\n"
        finally:
            delete_all(b, key)
            if snap is not None:
                client.delete_snapshot(snap.id)


def test_an_image_pulled_through_one_replica_boots_on_the_other(cluster, registry, workdir):
    """A snapshot made from an image through "b" (which runs no sandboxes)
    boots on "a": the layers go where the sandbox runs."""
    from registry import build_image

    a, b, _ = cluster
    image = build_image(registry, workdir, "replicated:1", files={"/marker": "pulled-through-b\n"})
    _, key = new_tenant(a.srv, "pull")
    with sdk(b, key) as client:
        snap = client.create_snapshot("pulled", docker_image=image, fs_capacity_bytes=1 << 30, timeout=120)
        try:
            assert snap.status == "ready", snap
            sb = client.create_sandbox(snapshot_id=snap.id, name="from-pull")
            assert sb.run("cat /marker", timeout=60).stdout == "pulled-through-b\n"
            assert a.logged("image fetched from a replica")
            # The transfer routes answer only the cluster token.
            for path in ("images/sha256:" + "0" * 64, "layers/sha256:" + "0" * 64, "layers/..%2F..%2Fetc"):
                r = httpx.get(f"{b.endpoint}/internal/v1/cluster/{path}", headers={"x-sandpit-cluster-token": "forged"})
                assert r.status_code == 401, (path, r.status_code, r.text)
                r = httpx.get(f"{b.endpoint}/internal/v1/cluster/{path}", headers=headers(key))
                assert r.status_code == 401, (path, r.status_code, r.text)
        finally:
            delete_all(b, key)
            client.delete_snapshot(snap.id)


def test_the_leader_killed_hands_its_duties_over(cluster):
    a, b, database = cluster
    _, key = new_tenant(a.srv, "leader")
    # A pool (refilled by the leader) and a stopped sandbox that will
    # expire once its deletion delay is shortened.
    r = httpx.post(f"{a.api}/templates", headers=headers(key), json={"name": "tiny", "image": "host", "resources": {"cpu": "500m", "memory": "256Mi"}})
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{a.api}/pools", headers=headers(key), json={"name": "standby", "template_name": "tiny", "replicas": 1, "wait_for_ready": True, "timeout": 120}, timeout=150)
    assert r.status_code in (200, 201), r.text
    box = create(b, key, name="expiring", wait_for_ready=True, delete_after_stop_seconds=86400).json()
    r = httpx.post(f"{b.api}/boxes/expiring/stop", headers=headers(key), timeout=60)
    assert r.status_code == 200, r.text
    assert (a.data_dir / "sandboxes" / box["id"]).exists()

    mark = len(b.log)
    a.kill9()
    wait_for(lambda: b.logged("now the leader", mark), 15, "b to take the lead")
    # Retention, now on "b": the sandbox expires and its row goes ("a",
    # which keeps its files, is down).
    r = httpx.patch(f"{b.api}/boxes/expiring", headers=headers(key), json={"delete_after_stop_seconds": 60})
    assert r.status_code == 200, r.text
    wait_for(
        lambda: httpx.get(f"{b.api}/boxes/expiring", headers=headers(key)).status_code == 404,
        40,
        "the leader's retention to delete the expired sandbox",
    )
    assert b.logged("deleting the row of a sandbox whose node is down", mark), b.log[mark:]
    # "a" comes back (as a follower) and removes the deleted sandbox's files.
    mark_a = len(a.log)
    a.start()
    wait_for(lambda: not (a.data_dir / "sandboxes" / box["id"]).exists(), 30, "a to sweep the files")
    assert a.logged("removing the files of a sandbox deleted elsewhere", mark_a)
    # Pool refill is the leader's ("b"): a claim through "a" is refilled
    # with a member "b" places on "a".
    wait_for(lambda: httpx.get(f"{a.api}/pools/standby", headers=headers(key)).json()["ready_replicas"] == 1, 60, "refill after restart")
    r = create(a, key, name="claimer", template_name="tiny", wait_for_ready=True)
    assert r.status_code == 201, r.text
    wait_for(lambda: httpx.get(f"{b.api}/pools/standby", headers=headers(key)).json()["ready_replicas"] == 1, 60, "refill by b")
    assert not a.logged("now the leader", mark_a), "a should follow"
    delete_all(a, key)
    r = httpx.delete(f"{a.api}/pools/standby", headers=headers(key), timeout=60)
    assert r.status_code in (200, 204), r.text
