"""The rest of the LangSmith sandbox API (issue 17) through the real SDK:
no silent acceptance of fields Sandpit does not implement, download links,
registries and the semantics the SDK documents."""

from __future__ import annotations

import base64
import inspect
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from langsmith.sandbox import ResourceNotFoundError, SandboxClient

from helpers import new_tenant_key


def message(resp: httpx.Response) -> str:
    return resp.json()["detail"]["message"]


# --- item 5: no silent acceptance ---------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"preserve_memory_on_stop": True}, "preserve_memory_on_stop"),
        ({"restore_memory": True}, "restore_memory"),
    ],
)
def test_unimplemented_create_fields_are_refused_by_name(client, names, kwargs, field):
    name = "refuse-" + secrets.token_hex(3)
    with pytest.raises(Exception) as caught:
        client.create_sandbox(name=name, **kwargs)
    names.append(name)
    assert field in str(caught.value), caught.value
    with pytest.raises(ResourceNotFoundError):
        client.get_sandbox(name)


def test_false_memory_flags_and_tag_value_ids_are_accepted(client, http, names):
    if "tag_value_ids" in inspect.signature(client.create_sandbox).parameters:
        sb = client.create_sandbox(
            name="tags-ok", preserve_memory_on_stop=False, restore_memory=False, tag_value_ids=["tv-1", "tv-2"]
        )
    else:  # langsmith 0.15.0 has no tag_value_ids yet
        resp = http.post("/boxes", json={"name": "tags-ok", "preserve_memory_on_stop": False,
                                         "restore_memory": False, "tag_value_ids": ["tv-1", "tv-2"]})
        assert resp.status_code == 201, resp.text
        sb = client.get_sandbox("tags-ok")
    names.append(sb.name)
    body = http.get(f"/boxes/{sb.name}").json()
    assert body["tag_value_ids"] == ["tv-1", "tv-2"]
    assert "preserve_memory_on_stop" not in body and "restore_memory" not in body


def test_unknown_fields_are_refused_everywhere(http, client, names):
    resp = http.post("/boxes", json={"name": "unknown-f", "size_class": "small"})
    assert resp.status_code == 422 and "size_class" in message(resp), resp.text
    resp = http.post("/boxes", json={"name": "unknown-f", "tag_value_ids": "not-a-list"})
    assert resp.status_code == 422, resp.text
    sb = client.create_sandbox(name="unknown-u")
    names.append(sb.name)
    resp = http.patch(f"/boxes/{sb.name}", json={"tag_value_ids": ["x"]})
    assert resp.status_code == 422 and "tag_value_ids" in message(resp), resp.text
    resp = http.post("/snapshots", json={"name": "s", "docker_image": "busybox", "fs_capacity_bytes": 1 << 30,
                                         "build_args": {}})
    assert resp.status_code == 422 and "build_args" in message(resp), resp.text
    resp = http.post(f"/boxes/{sb.name}/snapshot", json={"name": "s", "memory": True})
    assert resp.status_code == 422 and "memory" in message(resp), resp.text


# --- item 2: download links ---------------------------------------------


def fetch(url: str, **headers) -> httpx.Response:
    """A fetch with no credential at all (what a browser holding the link does)."""
    return httpx.get(url, headers=headers, timeout=60)


def test_download_link_serves_one_file_with_no_credential(client, names):
    sb = client.create_sandbox(name="dl-one")
    names.append(sb.name)
    data = b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000))
    sb.write("/tmp/out/report.csv", data)
    link = sb.generate_download_url("/tmp/out/report.csv", content_type="text/csv",
                                    content_disposition="inline", expires_in_seconds=300)
    assert link.token and link.token in link.download_url
    assert link.expires_at and link.expires_at.endswith("Z")
    resp = fetch(link.download_url)
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert resp.headers["content-type"] == "text/csv"
    assert resp.headers["content-disposition"].startswith('inline; filename="report.csv"')
    assert resp.headers["content-security-policy"] == "sandbox"
    assert resp.headers["x-content-type-options"] == "nosniff"
    # Range and HEAD, as the SDK documents.
    part = fetch(link.download_url, Range="bytes=3-7")
    assert part.status_code == 206 and part.content == data[3:8], part.headers
    head = httpx.head(link.download_url, timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    assert head.headers["content-security-policy"] == "sandbox"


def test_download_link_defaults_never_expire_and_attach(client, names):
    sb = client.create_sandbox(name="dl-default")
    names.append(sb.name)
    sb.write("/tmp/page.html", b"<script>alert(1)</script>")
    link = sb.generate_download_url("/tmp/page.html")
    assert link.expires_at is None
    resp = fetch(link.download_url)
    assert resp.status_code == 200 and resp.content == b"<script>alert(1)</script>"
    # Never sniffed or rendered as the file's own type.
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-disposition"].startswith('attachment; filename="page.html"')


def test_download_link_refusals(client, srv, names):
    sb = client.create_sandbox(name="dl-refuse")
    names.append(sb.name)
    sb.write("/tmp/a.txt", b"secret-a")
    sb.write("/tmp/b.txt", b"secret-b")
    link = sb.generate_download_url("/tmp/a.txt", expires_in_seconds=1)
    payload, tag = link.token.split(".")
    # Repointed at another path: the signature no longer matches.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["path"] == "/tmp/a.txt"
    claims["path"] = "/tmp/b.txt"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    base = link.download_url[: -len(link.token)]
    for bad in (f"{forged_payload}.{tag}", f"{payload}.{tag[:-4]}AAAA", "garbage", f"{payload}"):
        resp = fetch(base + bad)
        assert resp.status_code == 401, (bad, resp.status_code, resp.text)
        assert b"secret" not in resp.content
    time.sleep(2.2)
    expired = fetch(link.download_url)
    assert expired.status_code == 401 and "expired" in message(expired), expired.text
    # A missing file is 404; a bad request is refused by the server too.
    gone = sb.generate_download_url("/tmp/none.txt")
    assert fetch(gone.download_url).status_code == 404
    with httpx.Client(base_url=srv.api, headers=srv.headers(), timeout=30) as http:
        for body in ({"path": "/tmp/a.txt", "expires_in_seconds": 0},
                     {"path": "/tmp/a.txt", "content_disposition": "form-data"},
                     {"path": "/tmp/a.txt", "content_type": "text/html\r\nSet-Cookie: a=b"},
                     {"path": ""}):
            resp = http.post(f"/boxes/{sb.name}/download-url", json=body)
            assert resp.status_code == 422, (body, resp.text)
    # Another tenant cannot mint a link to this sandbox.
    with SandboxClient(api_endpoint=srv.api, api_key=new_tenant_key(srv, "dl")) as other:
        with pytest.raises(ResourceNotFoundError):
            other.generate_download_url(sb.name, "/tmp/a.txt")


def test_download_link_wakes_a_stopped_sandbox_and_dies_with_it(client, names):
    sb = client.create_sandbox(name="dl-wake")
    names.append(sb.name)
    sb.write("/tmp/kept.txt", b"kept")
    link = sb.generate_download_url("/tmp/kept.txt")
    client.stop_sandbox(sb.name)
    assert client.get_sandbox(sb.name).status == "stopped"
    resp = fetch(link.download_url)
    assert resp.status_code == 200 and resp.content == b"kept"
    client.delete_sandbox(sb.name)
    assert fetch(link.download_url).status_code == 404


def test_download_link_reads_the_sandbox_file_never_the_host_one(client, names, tmp_path: Path):
    """A hostile sandbox points the link's path at a host path through a
    symlink: the agent resolves it inside the sandbox, so the host file is
    never served."""
    host_secret = Path("/tmp") / f"sp-dl-host-{secrets.token_hex(4)}"
    host_secret.write_text("HOST-SECRET")
    try:
        sb = client.create_sandbox(name="dl-link")
        names.append(sb.name)
        sb.run(f"ln -s {host_secret} /tmp/evil && ln -s /proc/1/root{host_secret} /tmp/evil2")
        for path in ("/tmp/evil", "/tmp/evil2"):
            link = sb.generate_download_url(path)
            resp = fetch(link.download_url)
            assert b"HOST-SECRET" not in resp.content
            assert resp.status_code == 404, resp.text
    finally:
        host_secret.unlink()


# --- item 4: semantics -----------------------------------------------------


def test_proxy_update_on_a_stopped_sandbox_is_not_ready(client, names):
    from langsmith.sandbox import SandboxNotReadyError

    sb = client.create_sandbox(name="proxy-stopped")
    names.append(sb.name)
    client.stop_sandbox(sb.name)
    with pytest.raises(SandboxNotReadyError):
        client.update_sandbox(sb.name, proxy_config={"access_control": {"allow_list": ["example.com"]}})
    client.start_sandbox(sb.name)
    client.update_sandbox(sb.name, proxy_config={"access_control": {"allow_list": ["example.com"]}})


def test_non_persistent_sandboxes_start_fresh(client, http, names):
    """`persistent: false` discards the files at every stop (and such a
    sandbox cannot be captured); a persistent one keeps them."""
    for persistent in (False, True):
        sb = client.create_sandbox(name=f"persist-{str(persistent).lower()}", persistent=persistent)
        names.append(sb.name)
        assert http.get(f"/boxes/{sb.name}").json()["persistent"] is persistent
        sb.write("/root/kept.txt", b"written")
        sb.run("mkdir -p /opt/made && echo x > /opt/made/f")
        client.stop_sandbox(sb.name)
        client.start_sandbox(sb.name)
        after = sb.run("cat /root/kept.txt /opt/made/f 2>&1; true").stdout
        if persistent:
            assert after == "writtenx\n", after
        else:
            assert "written" not in after and "No such file" in after, after
            resp = http.post(f"/boxes/{sb.name}/snapshot", json={"name": "never"})
            assert resp.status_code == 422 and "persistent" in message(resp), resp.text


# --- item 7: Dockerfile snapshots ----------------------------------------


def test_dockerfile_snapshots_are_refused_clearly(client, http, names, tmp_path: Path):
    from langsmith.sandbox import ResourceCreationError

    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    with pytest.raises(ResourceCreationError):
        client.create_snapshot_from_dockerfile("from-dockerfile", tmp_path / "Dockerfile", context=tmp_path,
                                               timeout=120)
    assert not [s for s in client.list_sandboxes() if s.name.startswith("snapshot-builder-")]
    sb = client.create_sandbox(name="export-img")
    names.append(sb.name)
    resp = http.post(f"/boxes/{sb.name}/snapshot", json={"name": "x", "docker_image": "built:1"})
    assert resp.status_code == 422, resp.text
    assert "create_snapshot_from_dockerfile" in message(resp) and "docker_image" in message(resp)


# --- item 3: registries ----------------------------------------------------
# Last in the module: these start a server of their own (suspending the
# session server until the module ends).

GiB = 1 << 30


@pytest.fixture(scope="module")
def private(workdir):
    """A registry demanding credentials (htpasswd), an image pushed to it,
    and a server of the module's own that reaches it over plain HTTP."""
    from conftest import checked_server
    from registry import build_image, start_registry

    creds = ("robot", "s3cret-" + secrets.token_hex(6))
    reg = start_registry(workdir, credentials=creds)
    image = build_image(reg, workdir, "private/app:1", files={"/app/marker": "private-ok\n"}, credentials=creds)
    try:
        with checked_server(workdir / "data-reg", api_key="sp_lsr_" + secrets.token_urlsafe(8),
                            extra_args=["--insecure-registry", reg.host]) as server:
            yield server, reg, image, creds
    finally:
        reg.stop()


def test_registry_crud_never_returns_the_password(private):
    server, reg, _, creds = private
    with SandboxClient(api_endpoint=server.api, api_key=server.api_key) as c:
        made = c.registries.create(name="crud", url=f"http://{reg.host}/", username=creds[0], password=creds[1])
        assert (made.name, made.url, made.auth_type) == ("crud", reg.host, "DOCKER_CONFIG")
        assert made.id and made.created_at
        assert c.registries.retrieve("crud").id == made.id
        listed = c.registries.list()
        assert [r.name for r in listed.items] == ["crud"]
        renamed = c.registries.update("crud", body_name="crud2", password="new-" + creds[1])
        assert renamed.name == "crud2" and renamed.id == made.id
        with pytest.raises(Exception) as caught:
            c.registries.retrieve("crud")
        assert getattr(caught.value, "status_code", None) == 404, caught.value
        with pytest.raises(Exception) as caught:
            c.registries.create(name="crud2", url=reg.host, username="a", password="b")
        assert getattr(caught.value, "status_code", None) == 409, caught.value
        with pytest.raises(Exception) as caught:
            c.registries.create(name="ecr", url="1.dkr.ecr.us-east-1.amazonaws.com", auth_type="AWS_ROLE",
                                aws_role_arn="arn:aws:iam::1:role/pull")
        assert getattr(caught.value, "status_code", None) == 422 and "AWS_ROLE" in str(caught.value)
        # The password is in no answer, and sealed at rest.
        with httpx.Client(base_url=server.api, headers=server.headers(), timeout=30) as http:
            for path in ("/registries", "/registries/crud2"):
                text = http.get(path).text
                assert creds[1] not in text and "password" not in text, text
        for db in server.data_dir.glob("sandpit.db*"):  # with the WAL
            assert creds[1].encode() not in db.read_bytes(), db
        c.registries.delete("crud2")
        assert c.registries.list().items == []
        # Another tenant sees none of it.
        c.registries.create(name="mine", url=reg.host, username=creds[0], password=creds[1])
        with SandboxClient(api_endpoint=server.api, api_key=new_tenant_key(server, "reg")) as other:
            assert other.registries.list().items == []
            with pytest.raises(Exception) as caught:
                other.registries.retrieve("mine")
            assert getattr(caught.value, "status_code", None) == 404
        c.registries.delete("mine")


def test_create_snapshot_pulls_with_the_registry(private):
    from langsmith.sandbox import ResourceCreationError

    server, reg, image, creds = private
    with SandboxClient(api_endpoint=server.api, api_key=server.api_key) as c:
        with pytest.raises(ResourceCreationError, match="registry refused access"):
            c.create_snapshot("no-creds", docker_image=image, fs_capacity_bytes=GiB)
        reg_row = c.registries.create(name="priv", url=reg.host, username=creds[0], password=creds[1])
        snap = c.create_snapshot("with-creds", docker_image=image, fs_capacity_bytes=GiB, registry_id=reg_row.id)
        assert snap.status == "ready"
        with c.sandbox(snapshot_id=snap.id) as sb:
            assert sb.run("cat /app/marker").stdout == "private-ok\n"
        # Another tenant can neither use the id nor ride on the pull: its
        # own pull without credentials is still refused.
        with SandboxClient(api_endpoint=server.api, api_key=new_tenant_key(server, "reg")) as other:
            with pytest.raises(ResourceNotFoundError):
                other.create_snapshot("steal", docker_image=image, fs_capacity_bytes=GiB, registry_id=reg_row.id)
            with pytest.raises(ResourceCreationError, match="registry refused access"):
                other.create_snapshot("steal", docker_image=image, fs_capacity_bytes=GiB)
        # Unknown ids are 404; an image on another host never gets the password.
        with pytest.raises(ResourceNotFoundError):
            c.create_snapshot("x", docker_image=image, fs_capacity_bytes=GiB, registry_id="no-such-registry")
        with pytest.raises(Exception) as caught:
            c.create_snapshot("x", docker_image="127.0.0.2:1/other:1", fs_capacity_bytes=GiB,
                              registry_id=reg_row.id)
        assert "not on registry" in str(caught.value)
        # A wrong password fails the pull with the registry's refusal.
        c.registries.update("priv", password="wrong")
        with pytest.raises(ResourceCreationError, match="registry refused access"):
            c.create_snapshot("wrong", docker_image=image, fs_capacity_bytes=GiB, registry_id=reg_row.id)
        c.delete_snapshot(snap.id)


def test_snapshot_capacity_and_bare_names(private):
    """A sandbox gets its snapshot's disk unless it asks for more (never
    less); a bare name is `latest`, else the newest untagged snapshot."""
    server, reg, image, creds = private
    with SandboxClient(api_endpoint=server.api, api_key=server.api_key) as c:
        reg_row = c.registries.create(name="cap", url=reg.host, username=creds[0], password=creds[1])
        small = 256 << 20
        first = c.create_snapshot("cap", docker_image=image, fs_capacity_bytes=small, registry_id=reg_row.id,
                                  tag="v")
        sb = c.create_sandbox(name="cap-default", snapshot_id=first.id)
        try:
            assert sb.fs_capacity_bytes == small
            assert sb.run("cat /app/marker").stdout == "private-ok\n"
        finally:
            c.delete_sandbox(sb.name)
        with pytest.raises(Exception) as caught:
            c.create_sandbox(name="cap-small", snapshot_id=first.id, fs_capacity_bytes=small - (1 << 20))
        assert "at least the snapshot" in str(caught.value)
        bigger = c.create_sandbox(name="cap-big", snapshot_id=first.id, fs_capacity_bytes=2 * small)
        assert bigger.fs_capacity_bytes == 2 * small
        c.delete_sandbox(bigger.name)
        # Re-using tag "v" leaves `first` untagged: the bare name finds it,
        # not the newer tagged one (there is no `latest`).
        second = c.create_snapshot("cap", docker_image=image, fs_capacity_bytes=small, registry_id=reg_row.id,
                                   tag="v")
        assert c.get_snapshot("cap:v").id == second.id
        assert c.get_snapshot("cap").id == first.id
        c.delete_snapshot(first.id)
        # No `latest` and no untagged one left: a bare name finds nothing.
        with pytest.raises(ResourceNotFoundError):
            c.get_snapshot("cap")
        c.delete_snapshot(second.id)
        c.registries.delete("cap")
