"""Sandbox mounts (`mount_config`, langsmith 0.15.1's "Sandbox Mounts"):
Git repositories and S3/GCS buckets the host fetches or mounts and binds
into the sandbox, with credentials that never enter it.

Real servers on loopback, reached by name through `--egress-resolve` and
trusted through `--egress-upstream-ca` (a CA this test makes):

- `git.mounts.test`: git's own `git-http-backend` as CGI behind a small
  Python TLS server;
- `s3.mounts.test`: `moto_server` (moto 5.2.5) with TLS;
- `gcs.mounts.test`: `gcp-storage-emulator` behind a TLS relay, and
  `oauth2.mounts.test` a token endpoint that checks each JWT-bearer grant
  against the service account's public key.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import boto3
import httpx
import jwt
import pytest
from botocore.config import Config
from conftest import checked_server
from langsmith import Langsmith
from langsmith.sandbox import (
    ResourceCreationError,
    SandboxClient,
    aws_auth,
    context_hub_mount,
    gcp_auth,
    gcs_mount,
    git_mount,
    mount_config,
    opaque_secret,
    s3_mount,
    workspace_secret,
)
from helpers import QuietHandler, make_ca, serve_https
from test_egress_gcp import make_account

HOSTS = ["git.mounts.test", "s3.mounts.test", "gcs.mounts.test", "oauth2.mounts.test"]
EGRESS_PORTS = "31443,31080,31053"
AWS_KEY_ID = "AKIAMOUNTS" + secrets.token_hex(5).upper()
AWS_SECRET = "mount-secret-" + secrets.token_hex(12)
ROBOT = "mounter@sandpit-test.iam.gserviceaccount.com"
TOKEN_URI = "https://oauth2.mounts.test/token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


# ---- git over HTTPS: git-http-backend as CGI ------------------------------

GIT_BACKEND = Path(subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                  check=True).stdout.strip()) / "git-http-backend"


class GitCgi(QuietHandler):
    protocol_version = "HTTP/1.1"
    root: Path = Path("/nonexistent")

    def _handle(self):
        path, _, query = self.path.partition("?")
        body = self.read_body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(GitCgi.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run([str(GIT_BACKEND)], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


class Repo:
    """A bare repository served over HTTPS and a clone that pushes to it."""

    def __init__(self, root: Path):
        self.bare = root / "proj.git"
        self.src = root / "proj-src"
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        git("init", "-q", "-b", "main", str(self.src), cwd=root)

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            path = self.src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.src)
        git("commit", "-q", "-m", message, cwd=self.src)
        git("push", "-q", str(self.bare), "main", "--tags", cwd=self.src)
        return git("rev-parse", "HEAD", cwd=self.src)

    def tag(self, name: str) -> None:
        git("tag", name, cwd=self.src)
        git("push", "-q", str(self.bare), name, cwd=self.src)


# ---- GCS: the emulator behind TLS, and a token endpoint --------------------

class TlsRelay:
    """Terminates TLS on a loopback port and relays to a plain one."""

    def __init__(self, cert: Path, key: Path, target: int):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            client = self.ctx.wrap_socket(raw, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            raw.close()
            return

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self):
        self.sock.close()


class TokenEndpoint(QuietHandler):
    protocol_version = "HTTP/1.1"
    public_key = None
    grants: list[dict] = []
    refused: list[str] = []

    def do_POST(self):
        form = urllib.parse.parse_qs(self.read_body().decode())
        try:
            claims = jwt.decode(form["assertion"][0], TokenEndpoint.public_key, algorithms=["RS256"],
                                audience=TOKEN_URI, issuer=ROBOT)
            TokenEndpoint.grants.append(claims)
            status, answer = 200, {"access_token": f"ya29.mount-{len(TokenEndpoint.grants)}",
                                   "expires_in": 3599, "token_type": "Bearer"}
        except Exception as err:  # noqa: BLE001 - any failure is a refusal
            TokenEndpoint.refused.append(repr(err))
            status, answer = 400, {"error": "invalid_grant"}
        self.reply_json(status, answer)


def gcs_upload(port: int, bucket: str, name: str, data: bytes) -> None:
    base = f"http://127.0.0.1:{port}"
    httpx.post(f"{base}/storage/v1/b?project=p", json={"name": bucket})
    resp = httpx.post(f"{base}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                      content=data, headers={"Content-Type": "text/plain"})
    assert resp.status_code == 200, resp.text


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="module")
def upstreams():
    work = Path(tempfile.mkdtemp(prefix="sp-mounts-up-"))
    ca, cert, key = make_ca(work, HOSTS)
    procs = []
    # git
    GitCgi.root = work
    repo = Repo(work)
    first = repo.commit({"README.md": "hello from git\n", "src/main.py": "print('v1')\n"}, "one")
    repo.tag("v1")
    git_server = serve_https(GitCgi, cert, key)
    # S3 (moto in server mode, TLS)
    s3_port = free_port()
    moto = shutil.which("moto_server") or str(Path(os.sys.executable).parent / "moto_server")
    # A custom endpoint's host must not be taken for a virtual-hosted bucket.
    moto_env = {**os.environ, "MOTO_S3_CUSTOM_ENDPOINTS": "https://s3.mounts.test"}
    procs.append(subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(s3_port), "-s", "-c", str(cert),
                                   "-k", str(key)], env=moto_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    wait_port(s3_port)
    # GCS (emulator, plain HTTP, behind a TLS relay) and its token endpoint
    gcs_port = free_port()
    emulator = str(Path(os.sys.executable).parent / "gcp-storage-emulator")
    procs.append(subprocess.Popen([emulator, "start", "--host", "127.0.0.1", "--port", str(gcs_port),
                                   "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(gcs_port)
    relay = TlsRelay(cert, key, gcs_port)
    sa_json, _, public = make_account(ROBOT)
    account = json.loads(sa_json)
    account["token_uri"] = TOKEN_URI
    TokenEndpoint.public_key = public
    tokens = serve_https(TokenEndpoint, cert, key)
    yield {
        "ca": ca, "repo": repo, "first": first, "s3": s3_port, "gcs": gcs_port,
        "sa_json": json.dumps(account, indent=2), "sa_key_probe": account["private_key"].splitlines()[5],
        "resolve": {"git.mounts.test": git_server.server_address[1], "s3.mounts.test": s3_port,
                    "gcs.mounts.test": relay.port, "oauth2.mounts.test": tokens.server_address[1]},
    }
    git_server.shutdown()
    tokens.shutdown()
    relay.close()
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(upstreams):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-mounts-srv-", dir="/tmp"))
    args = ["--egress-ports", EGRESS_PORTS, "--egress-upstream-ca", str(upstreams["ca"])]
    for host, port in upstreams["resolve"].items():
        args += ["--egress-resolve", f"{host}=127.0.0.1:{port}"]
    with checked_server(data_dir, api_key="k-mounts", extra_args=args) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def client(srv, upstreams):
    ls = Langsmith(api_key=srv.api_key, base_url=srv.endpoint)
    ls.workspace_secrets.upsert("MOUNT_AWS_SECRET", value=AWS_SECRET)
    ls.workspace_secrets.upsert("MOUNT_GCP_SA", value=upstreams["sa_json"])
    with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as c:
        yield c


def moto_client(upstreams):
    """boto3 against moto directly (loopback, no TLS name check needed)."""
    return boto3.client("s3", endpoint_url=f"https://127.0.0.1:{upstreams['s3']}", region_name="us-east-1",
                        aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET, verify=False,
                        config=Config(s3={"addressing_style": "path"}))


def helper_mounts(srv_pid: int) -> str:
    """The mount table of the server's runtime helper (where FUSE mounts live)."""
    found = ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if b"runtime-helper" in cmd and ppid == srv_pid:
            found += Path(f"/proc/{pid}/mountinfo").read_text()
    return found


def rclones(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith("rclone") and marker in cmd:
                out.append(f"{pid}: {cmd}")
    return out


def bracketed(value: str) -> str:
    """A grep pattern matching `value` whose own text does not contain it
    (the probe's command line is in /proc/*/cmdline too)."""
    return f"'{value[0]}[{value[1]}]{value[2:]}'"


def mount_logs(srv, sandbox_id: str) -> str:
    """The rclone logs of a sandbox's bucket mounts (for failure messages)."""
    logs = sorted((srv.data_dir / "sandboxes" / sandbox_id / "mounts").glob("fuse-*.log"))
    return "\n".join(f"{p.name}: {p.read_text()[-2000:]}" for p in logs)


def wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def raw_sandbox(srv, name: str) -> dict:
    resp = httpx.get(f"{srv.api}/boxes/{name}", headers=srv.headers())
    assert resp.status_code == 200, resp.text
    return resp.json()


# ---- tests ----------------------------------------------------------------

def test_git_mounts_show_a_ref_read_only_and_follow_new_commits(client, upstreams):
    repo = upstreams["repo"]
    url = "https://git.mounts.test/proj.git"
    cfg = mount_config(mounts=[
        git_mount(id="repo", mount_path="/mnt/repo", remote_url=url,
                  ref={"type": "branch", "name": "main"}, refresh_interval_seconds=2),
        git_mount(id="pinned", mount_path="/mnt/mounts/pinned", remote_url=url, ref={"type": "tag", "name": "v1"}),
        git_mount(id="commit", mount_path="/mnt/mounts/commit", remote_url=url),
    ])
    # Sandpit's extension: a commit id (the SDK's helper knows branch and tag).
    cfg["mounts"][2]["git"]["ref"] = {"type": "commit", "name": upstreams["first"]}
    with client.sandbox(name="git-mounts", mount_config=cfg) as sb:
        out = sb.run("ls -A /mnt/repo; cat /mnt/repo/README.md; stat -c '%U %a' /mnt/repo/README.md")
        assert out.exit_code == 0, out.stderr
        assert out.stdout.split() == ["README.md", "src", "hello", "from", "git", "root", "644"], out.stdout
        assert sb.run("cat /mnt/mounts/pinned/src/main.py").stdout == "print('v1')\n"
        assert sb.run("cat /mnt/mounts/commit/README.md").stdout == "hello from git\n"
        # Read-only inside, whatever the user.
        write = sb.run("echo x > /mnt/repo/new.txt; rm /mnt/repo/README.md")
        assert write.exit_code != 0 and "Read-only file system" in write.stderr, write.stderr
        # A new commit on the branch appears within the refresh interval;
        # the tag mount stays where it was.
        repo.commit({"NEWS.md": "second\n", "src/main.py": "print('v2')\n"}, "two")
        wait_for(lambda: sb.run("cat /mnt/repo/NEWS.md 2>/dev/null").stdout == "second\n", 30, "the new commit")
        assert sb.run("cat /mnt/repo/src/main.py").stdout == "print('v2')\n"
        assert sb.run("cat /mnt/mounts/pinned/src/main.py").stdout == "print('v1')\n"
        assert sb.run("test -e /mnt/mounts/pinned/NEWS.md").exit_code == 1


def test_s3_mounts_read_write_and_refuse_writes_when_read_only(client, srv, upstreams):
    s3 = moto_client(upstreams)
    s3.create_bucket(Bucket="data-bkt")
    s3.put_object(Bucket="data-bkt", Key="datasets/in/hello.txt", Body=b"hello from s3\n")
    s3.put_object(Bucket="data-bkt", Key="outside.txt", Body=b"not under the prefix\n")
    endpoint = "https://s3.mounts.test"
    cfg = mount_config(
        auth=[aws_auth(access_key_id=opaque_secret(AWS_KEY_ID),
                       secret_access_key=workspace_secret("MOUNT_AWS_SECRET"))],
        mounts=[
            s3_mount(id="rw", mount_path="/mnt/mounts/data", bucket="data-bkt", prefix="datasets/in",
                     endpoint_url=endpoint, path_style=True, read_only=False, cache={"writeback_seconds": 1}),
            s3_mount(id="ro", mount_path="/mnt/mounts/ro", bucket="data-bkt", endpoint_url=endpoint,
                     path_style=True, read_only=True),
        ],
    )
    sb = client.create_sandbox(name="s3-mounts", mount_config=cfg)
    try:
        sandbox_id = raw_sandbox(srv, "s3-mounts")["id"]
        out = sb.run("cat /mnt/mounts/data/hello.txt; ls /mnt/mounts/ro; stat -c %U /mnt/mounts/data/hello.txt")
        assert out.exit_code == 0, (out.stderr, mount_logs(srv, sandbox_id))
        assert out.stdout.split("\n")[0] == "hello from s3", out.stdout
        assert "outside.txt" in out.stdout and "datasets" in out.stdout
        assert out.stdout.split()[-1] == "root"
        # rw: a new file reaches the bucket, under the prefix.
        w = sb.run("printf 'written inside\\n' > /mnt/mounts/data/out.txt && sync")
        assert w.exit_code == 0, w.stderr

        def uploaded():
            try:
                return s3.get_object(Bucket="data-bkt", Key="datasets/in/out.txt")["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
        assert wait_for(uploaded, 30, "the upload") == b"written inside\n"
        # ro: writes are refused inside.
        ro = sb.run("echo x > /mnt/mounts/ro/new.txt")
        assert ro.exit_code != 0 and "Read-only file system" in ro.stderr, ro.stderr
        # The credentials are nowhere in the sandbox: environment, command
        # lines, mount table, files; and the API never shows the opaque one.
        probe = sb.run("env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'; "
                       "cat /proc/self/mountinfo; grep -rIl -e " + bracketed(AWS_SECRET) + " -e "
                       + bracketed(AWS_KEY_ID) + " /etc /tmp /root /run /var 2>/dev/null; true", timeout=120)
        for value in (AWS_SECRET, AWS_KEY_ID):
            assert value not in probe.stdout
        fuse_lines = [line for line in probe.stdout.splitlines() if " - fuse" in line]
        assert len(fuse_lines) == 2 and not any(str(srv.data_dir) in line for line in fuse_lines), fuse_lines
        shown = raw_sandbox(srv, "s3-mounts")
        assert AWS_KEY_ID not in json.dumps(shown)
        assert shown["mount_config"]["auth"]["aws"]["access_key_id"] == {"type": "opaque", "is_set": True}
        # On the host: one rclone per mount, credentials not on its command line.
        procs = rclones(sandbox_id)
        assert len(procs) == 2, procs
        assert not any(AWS_SECRET in p or AWS_KEY_ID in p for p in procs)
        # Stop: no rclone, no FUSE mount; start: mounted again.
        client.stop_sandbox("s3-mounts")
        assert rclones(sandbox_id) == []
        assert sandbox_id not in helper_mounts(srv.proc.pid)
        client.start_sandbox("s3-mounts")
        assert client.get_sandbox("s3-mounts").run("cat /mnt/mounts/data/out.txt").stdout == "written inside\n"
        assert len(rclones(sandbox_id)) == 2
    finally:
        client.delete_sandbox("s3-mounts")
    assert rclones(sandbox_id) == []
    assert sandbox_id not in helper_mounts(srv.proc.pid)


def test_gcs_mounts_read_with_a_token_minted_on_the_host(client, srv, upstreams):
    gcs_upload(upstreams["gcs"], "gcs-bkt", "shared/report.txt", b"hello from gcs\n")
    cfg = mount_config(
        auth=[gcp_auth(service_account_json=workspace_secret("MOUNT_GCP_SA"))],
        mounts=[gcs_mount(id="gcs", mount_path="/mnt/mounts/gcs", bucket="gcs-bkt", prefix="shared",
                          read_only=True)],
    )
    # Sandpit's extension: the JSON API's endpoint (an emulator here).
    cfg["mounts"][0]["gcs"]["endpoint"] = "https://gcs.mounts.test"
    with client.sandbox(name="gcs-mount", mount_config=cfg) as sb:
        out = sb.run("cat /mnt/mounts/gcs/report.txt")
        assert out.exit_code == 0 and out.stdout == "hello from gcs\n", (out.stdout, out.stderr)
        assert TokenEndpoint.grants and TokenEndpoint.grants[0]["iss"] == ROBOT, TokenEndpoint.refused
        probe = sb.run("env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'; "
                       "cat /proc/self/mountinfo; true")
        assert upstreams["sa_key_probe"] not in probe.stdout and ROBOT not in probe.stdout
        w = sb.run("echo x > /mnt/mounts/gcs/new.txt")
        assert w.exit_code != 0 and "Read-only file system" in w.stderr


def create_status(srv, body: dict) -> tuple[int, str]:
    resp = httpx.post(f"{srv.api}/boxes", headers=srv.headers(), json=body, timeout=60)
    return resp.status_code, resp.text


def test_bad_mount_configs_are_refused_with_the_field_named(client, srv):
    git_ok = {"id": "r", "type": "git", "mount_path": "/mnt/repo", "git": {"remote_url": "https://git.mounts.test/proj.git"}}
    s3_ok = {"id": "d", "type": "s3", "mount_path": "/mnt/mounts/d",
             "s3": {"endpoint_url": "https://s3.mounts.test", "region": "us-east-1", "bucket": "data-bkt"}}
    aws = {"aws": {"access_key_id": {"type": "opaque", "value": "A"},
                   "secret_access_key": {"type": "opaque", "value": "B"}}}

    def with_git(**changes):
        mount = json.loads(json.dumps(git_ok))
        mount["git"].update(changes.pop("git", {}))
        mount.update(changes)
        return {"auth": {}, "mounts": [mount]}

    def with_s3(**changes):
        mount = json.loads(json.dumps(s3_ok))
        mount["s3"].update(changes)
        return {"auth": aws, "mounts": [mount]}

    cases = [
        (with_git(mount_path="/etc/repo"), "mount_path"),
        (with_git(mount_path="/mnt/../etc"), "mount_path"),
        (with_git(git={"ref": {"type": "branch", "name": "--upload-pack=x"}}), "ref.name"),
        (with_git(git={"remote_url": "https://127.0.0.1/x.git"}), "remote_url"),
        (with_git(git={"remote_url": "http://git.mounts.test/x.git"}), "remote_url"),
        (with_s3(bucket="Not_A_Bucket"), "s3.bucket"),
        (with_s3(endpoint_url="http://s3.mounts.test"), "endpoint_url"),
        (with_s3(endpoint_url="https://169.254.169.254"), "endpoint_url"),
        ({"auth": {}, "mounts": [s3_ok]}, "aws auth"),
        ({"auth": {}, "mounts": [{"id": "m", "type": "contexthub", "mount_path": "/memories",
                                  "contexthub": {"repo": "-/agent"}}]}, "Context Hub"),
    ]
    for config, want in cases:
        status, text = create_status(srv, {"name": "bad-mount", "mount_config": config})
        assert status == 422 and want in text, (config, status, text)
    # Through the SDK (which raises a create's 422 as ResourceCreationError
    # carrying the server's message and error type).
    cfg = mount_config(mounts=[context_hub_mount(id="memories", mount_path="/memories", repo="-/my-agent")])
    with pytest.raises(ResourceCreationError, match="Context Hub mounts are not available.*ValidationError"):
        client.create_sandbox(name="hub-mount", mount_config=cfg)
    assert all(s.name not in ("bad-mount", "hub-mount") for s in client.list_sandboxes())


def test_mounts_that_cannot_be_reached_fail_the_boot_and_leave_nothing(client, srv, upstreams):
    missing = mount_config(mounts=[git_mount(id="gone", mount_path="/mnt/repo",
                                             remote_url="https://git.mounts.test/missing.git")])
    # The sandbox's own deny list holds for its mounts too.
    denied = mount_config(mounts=[git_mount(id="denied", mount_path="/mnt/repo",
                                            remote_url="https://git.mounts.test/proj.git")])
    no_bucket = mount_config(
        auth=[aws_auth(access_key_id=opaque_secret(AWS_KEY_ID), secret_access_key=workspace_secret("MOUNT_AWS_SECRET"))],
        mounts=[s3_mount(id="nb", mount_path="/mnt/mounts/nb", bucket="no-such-bucket",
                         endpoint_url="https://s3.mounts.test", path_style=True)])
    no_secret = mount_config(
        auth=[aws_auth(access_key_id=opaque_secret(AWS_KEY_ID), secret_access_key=workspace_secret("NOT_SET"))],
        mounts=[s3_mount(id="ns", mount_path="/mnt/mounts/ns", bucket="data-bkt",
                         endpoint_url="https://s3.mounts.test", path_style=True)])
    cases = [
        ("git-missing", missing, {}, "git fetch failed"),
        ("git-denied", denied, {"proxy_config": {"access_control": {"deny_list": ["git.mounts.test"]}}},
         "git fetch failed"),
        ("s3-no-bucket", no_bucket, {}, "bucket 'no-such-bucket' not found"),
        ("s3-no-secret", no_secret, {}, "workspace secret NOT_SET is not set"),
    ]
    for name, cfg, extra, want in cases:
        with pytest.raises(ResourceCreationError):
            client.create_sandbox(name=name, mount_config=cfg, **extra)
        box = raw_sandbox(srv, name)
        assert box["status"] == "failed" and want in (box.get("status_message") or ""), box
        assert rclones(box["id"]) == []
        assert box["id"] not in helper_mounts(srv.proc.pid)
        client.delete_sandbox(name)


def test_mounts_are_adopted_after_a_server_crash(client, srv, upstreams):
    from conftest import _resume

    s3 = moto_client(upstreams)
    s3.create_bucket(Bucket="crash-bkt")
    s3.put_object(Bucket="crash-bkt", Key="before.txt", Body=b"before the crash\n")
    cfg = mount_config(
        auth=[aws_auth(access_key_id=opaque_secret(AWS_KEY_ID), secret_access_key=workspace_secret("MOUNT_AWS_SECRET"))],
        mounts=[
            git_mount(id="repo", mount_path="/mnt/repo", remote_url="https://git.mounts.test/proj.git",
                      refresh_interval_seconds=2),
            s3_mount(id="b", mount_path="/mnt/mounts/b", bucket="crash-bkt", endpoint_url="https://s3.mounts.test",
                     path_style=True),
        ],
    )
    client.create_sandbox(name="crash-mounts", mount_config=cfg)
    sandbox_id = raw_sandbox(srv, "crash-mounts")["id"]
    before = sorted(rclones(sandbox_id))
    assert len(before) == 1
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(30)
    _resume(srv)
    try:
        # Adopted: the same rclone serves the bucket (its proxy is back on
        # the same port), and the Git mount follows the branch again.
        assert raw_sandbox(srv, "crash-mounts")["status"] == "ready"
        sb = client.get_sandbox("crash-mounts")
        assert sorted(rclones(sandbox_id)) == before
        assert sb.run("cat /mnt/mounts/b/before.txt").stdout == "before the crash\n"
        assert sb.run("echo after > /mnt/mounts/b/after.txt").exit_code == 0

        def uploaded():
            try:
                return s3.get_object(Bucket="crash-bkt", Key="after.txt")["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
        assert wait_for(uploaded, 30, "the upload through the adopted rclone") == b"after\n"
        upstreams["repo"].commit({"AFTER.md": "after the crash\n"}, "after")
        wait_for(lambda: sb.run("cat /mnt/repo/AFTER.md 2>/dev/null").stdout == "after the crash\n", 30,
                 "a refresh after the restart")
    finally:
        client.delete_sandbox("crash-mounts")
    assert rclones(sandbox_id) == []
