"""The sandboxes control API (`/api/v2/sandboxes/boxes`): CRUD, list
filters/sorting/pagination, rename, retention, stop/start and error cases,
through the real SDK where it has a call for it and raw HTTP where the SDK
validates client-side (so the server's own checks are exercised)."""

from __future__ import annotations

import time

import httpx
import pytest
from langsmith.sandbox import (
    ResourceNameConflictError,
    ResourceNotFoundError,
    SandboxAuthenticationError,
    SandboxClient,
    SandboxClientError,
)


def detail(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"detail"}, body
    # The LangSmith shape, plus the id of the request (also in the
    # `x-request-id` header) to find it in the server's log.
    assert set(body["detail"]) == {"error", "message", "request_id"}, body
    assert body["detail"]["request_id"] == resp.headers["x-request-id"], body
    assert body["detail"]["message"], body
    return body["detail"]


def test_healthz_needs_no_key(server):
    assert httpx.get(f"{server.endpoint}/healthz").status_code == 200


def test_create_get_delete(client, names):
    sb = client.create_sandbox(name="crud-one", idle_ttl_seconds=300, delete_after_stop_seconds=3600)
    names.append(sb.name)
    assert sb.status == "ready"
    assert sb.id and sb.dataplane_url and sb.created_at
    assert (sb.idle_ttl_seconds, sb.delete_after_stop_seconds, sb.stopped_at) == (300, 3600, None)
    got = client.get_sandbox("crud-one")
    assert got.id == sb.id
    assert client.get_sandbox_status("crud-one").status == "ready"
    client.delete_sandbox("crud-one")
    with pytest.raises(ResourceNotFoundError):
        client.get_sandbox("crud-one")
    with pytest.raises(ResourceNotFoundError):
        client.delete_sandbox("crud-one")


def test_response_carries_every_field(http, names):
    resp = http.post("/boxes", json={"name": "fields", "vcpus": 2, "mem_bytes": 256 << 20,
                                     "fs_capacity_bytes": 1 << 30, "labels": {"team": "a"}})
    assert resp.status_code == 201, resp.text
    names.append("fields")
    body = resp.json()
    for key in ("id", "name", "status", "status_message", "dataplane_url", "created_at", "updated_at",
                "vcpus", "mem_bytes", "fs_capacity_bytes", "idle_ttl_seconds",
                "delete_after_stop_seconds", "stopped_at", "snapshot_id", "proxy_config"):
        assert key in body, key
    assert (body["vcpus"], body["mem_bytes"], body["fs_capacity_bytes"]) == (2, 256 << 20, 1 << 30)
    assert body["idle_ttl_seconds"] == 600  # server default
    assert body["labels"] == {"team": "a"}
    # A field Sandpit does not implement is refused by name (issue 17),
    # never stored and echoed.
    resp = http.post("/boxes", json={"name": "fields-x", "size_class": "small"})
    assert resp.status_code == 422 and "size_class" in detail(resp)["message"], resp.text


def test_template_era_prefix_serves_the_same_api(server, names, client):
    sb = client.create_sandbox(name="alias-one")
    names.append(sb.name)
    resp = httpx.get(f"{server.endpoint}/v2/sandboxes/boxes/alias-one", headers=server.headers())
    assert resp.status_code == 200 and resp.json()["id"] == sb.id


def test_list_filters_sorting_pagination(client, http, names):
    made = ["list-b", "list-a", "list-c", "other-x"]
    for name in made:
        client.create_sandbox(name=name)
        names.append(name)
        time.sleep(0.01)
    client.stop_sandbox("list-c")

    def listed(**params):
        resp = http.get("/boxes", params=params)
        assert resp.status_code == 200, resp.text
        return [s["name"] for s in resp.json()["sandboxes"]]

    assert listed(name_contains="list-", sort_by="name", sort_direction="asc") == ["list-a", "list-b", "list-c"]
    assert listed(name_contains="LIST", sort_by="name", sort_direction="desc") == ["list-c", "list-b", "list-a"]
    assert listed(name_contains="list-")[:3] == ["list-c", "list-a", "list-b"]  # created_at desc
    assert listed(name_contains="list-", sort_by="created_at", sort_direction="asc") == ["list-b", "list-a", "list-c"]
    assert listed(status="stopped") == ["list-c"]
    assert set(listed(status="ready")) >= {"list-a", "list-b", "other-x"}
    page1 = listed(name_contains="list-", sort_by="name", sort_direction="asc", limit=2)
    page2 = listed(name_contains="list-", sort_by="name", sort_direction="asc", limit=2, offset=2)
    assert (page1, page2) == (["list-a", "list-b"], ["list-c"])
    assert http.get("/boxes", params={"offset": 2, "limit": 1}).json()["offset"] == 2
    assert listed(name_contains="%") == [] and listed(name_contains="_") == []
    assert {s.name for s in client.list_sandboxes()} >= set(made)
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"status": "running"},
                {"sort_by": "id"}, {"sort_direction": "sideways"}, {"limit": "ten"}):
        resp = http.get("/boxes", params=bad)
        assert resp.status_code == 400, (bad, resp.text)
        detail(resp)


def test_rename_and_retention_update(client, names):
    client.create_sandbox(name="rename-me")
    names.append("rename-me")
    client.create_sandbox(name="taken")
    names.append("taken")
    with pytest.raises(ResourceNameConflictError):
        client.update_sandbox("rename-me", new_name="taken")
    sb = client.update_sandbox("rename-me", new_name="renamed", idle_ttl_seconds=1800)
    names.append("renamed")
    assert (sb.name, sb.idle_ttl_seconds) == ("renamed", 1800)
    with pytest.raises(ResourceNotFoundError):
        client.get_sandbox("rename-me")
    assert sb.run("echo still here").stdout == "still here\n"
    sb = client.update_sandbox("renamed", idle_ttl_seconds=0, delete_after_stop_seconds=0)
    assert (sb.idle_ttl_seconds, sb.delete_after_stop_seconds) == (0, 0)


def test_duplicate_name_is_409_and_creates_nothing(client, http, names):
    client.create_sandbox(name="dup")
    names.append("dup")
    resp = http.post("/boxes", json={"name": "dup"})
    assert resp.status_code == 409
    assert detail(resp)["error"] == "Conflict"
    assert [s["name"] for s in http.get("/boxes", params={"name_contains": "dup"}).json()["sandboxes"]] == ["dup"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad_Name"},
        {"name": "-x"},
        {"name": "x" * 64},
        {"idle_ttl_seconds": -60},
        {"idle_ttl_seconds": 61},
        {"delete_after_stop_seconds": 90},
        {"vcpus": "two"},
        {"vcpus": 0},
        {"mem_bytes": 1024},
        {"timeout": -1},
        {"labels": ["not", "a", "map"]},
        {"snapshot_id": "a", "template_name": "b"},
    ],
)
def test_bad_fields_are_rejected_and_nothing_is_created(http, body):
    before = http.get("/boxes").json()["sandboxes"]
    resp = http.post("/boxes", json=body)
    assert resp.status_code == 422, (body, resp.text)
    assert detail(resp)["error"] == "ValidationError"
    assert http.get("/boxes").json()["sandboxes"] == before


def test_malformed_json_is_400(http):
    resp = http.post("/boxes", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    detail(resp)


def test_unknown_snapshot_is_404(client, http):
    resp = http.post("/boxes", json={"snapshot_id": "no-such-snapshot"})
    assert resp.status_code == 404
    detail(resp)
    with pytest.raises(ResourceNotFoundError):
        client.create_sandbox(snapshot="no-such-snapshot")


def test_keys_are_checked(server):
    bad = SandboxClient(api_endpoint=server.api, api_key="wrong", max_retries=0)
    with pytest.raises(SandboxAuthenticationError):
        bad.list_sandboxes()
    resp = httpx.get(f"{server.api}/boxes")
    assert resp.status_code == 401
    detail(resp)


def test_unknown_routes_use_the_error_shape(http):
    resp = http.get("/nonsense")
    assert resp.status_code == 404
    detail(resp)


def test_async_create_and_status_polling(client, names):
    sb = client.create_sandbox(name="async-one", wait_for_ready=False)
    names.append("async-one")
    assert sb.status in ("provisioning", "ready")
    ready = client.wait_for_sandbox("async-one", timeout=60, poll_interval=0.05)
    assert ready.status == "ready"
    assert ready.run("echo ok").stdout == "ok\n"


def test_stop_start_keeps_files(client, names):
    sb = client.create_sandbox(name="stopper")
    names.append("stopper")
    sb.run("echo 'hello' > /tmp/state.txt")
    sb.stop()
    stopped = client.get_sandbox("stopper")
    assert stopped.status == "stopped" and stopped.stopped_at
    sb.start()
    assert sb.status == "ready"
    assert sb.run("cat /tmp/state.txt").stdout.strip() == "hello"
    assert client.get_sandbox("stopper").stopped_at is None


def test_dataplane_of_a_stopped_sandbox_starts_it(client, names):
    sb = client.create_sandbox(name="wake-me")
    names.append("wake-me")
    sb.write("/home/user/x.txt", "kept")
    client.stop_sandbox("wake-me")
    assert sb.read("/home/user/x.txt") == b"kept"
    assert client.get_sandbox("wake-me").status == "ready"


def test_dataplane_needs_the_key(server, client, names):
    sb = client.create_sandbox(name="dp-auth")
    names.append("dp-auth")
    resp = httpx.get(f"{sb.dataplane_url}/download", params={"path": "/etc/hostname"})
    assert resp.status_code == 401
    resp = httpx.get(f"{sb.dataplane_url}/download", params={"path": "/etc/hostname"},
                     headers={"X-Api-Key": "nope"})
    assert resp.status_code == 401
    resp = httpx.get(f"{server.endpoint}/dataplane/00000000-0000-0000-0000-000000000000/download",
                     params={"path": "/x"}, headers=server.headers())
    assert resp.status_code == 404


def test_file_errors(client, names, server):
    sb = client.create_sandbox(name="files-err")
    names.append("files-err")
    with pytest.raises(ResourceNotFoundError):
        sb.read("/no/such/file")
    with pytest.raises(SandboxClientError):
        sb.read("../../../../../etc/passwd")
    big = b"x" * (33 << 20)
    with pytest.raises(SandboxClientError):
        sb.write("/home/user/big.bin", big)
    assert sb.run("ls /home/user/big.bin").exit_code != 0
    resp = httpx.post(f"{sb.dataplane_url}/upload", params={"path": "/home/user/big.bin"},
                      files={"file": ("file", big)}, headers=server.headers(), timeout=60)
    assert resp.status_code == 413
    detail(resp)
