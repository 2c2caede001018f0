"""The rest of the LangSmith sandbox API (issue 17) through the real SDK:
no silent acceptance of fields Sandpit does not implement, download links,
registries and the semantics the SDK documents."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from langsmith.sandbox import ResourceNotFoundError, SandboxClient

from helpers import new_tenant_key


@pytest.fixture
def http(srv):
    with httpx.Client(base_url=srv.api, headers=srv.headers(), timeout=60) as c:
        yield c


@pytest.fixture
def names(client):
    """Sandboxes to delete after the test."""
    made: list[str] = []
    yield made
    for name in made:
        try:
            client.delete_sandbox(name)
        except ResourceNotFoundError:
            pass


def message(resp: httpx.Response) -> str:
    return resp.json()["detail"]["message"]


# --- item 5: no silent acceptance ---------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"preserve_memory_on_stop": True}, "preserve_memory_on_stop"),
        ({"restore_memory": True}, "restore_memory"),
        ({"access_delegation": {"mode": "EXPLICIT", "permissions": ["sandboxes:read"]}}, "access_delegation"),
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
    sb = client.create_sandbox(
        name="tags-ok", preserve_memory_on_stop=False, restore_memory=False, tag_value_ids=["tv-1", "tv-2"]
    )
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


def test_service_url_login_and_embed_modes_are_refused(client, names):
    sb = client.create_sandbox(name="svc-modes")
    names.append(sb.name)
    for kwargs, field in (({"access": "restricted"}, "access"), ({"access": "workspace"}, "access"),
                          ({"embed_origins": ["https://app.example"]}, "embed_origins")):
        with pytest.raises(Exception) as caught:
            client.service(sb.name, 8000, **kwargs)
        assert field in str(caught.value), caught.value
