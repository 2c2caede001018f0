"""The API description: `GET /openapi.json` from a real server is a valid
OpenAPI 3.1 document (openapi-spec-validator), needs no key, and what the
described routes answer matches the schemas the document gives them
(validated with the document's own JSON Schema dialect)."""

from __future__ import annotations

import secrets

import httpx
import pytest
from helpers import new_tenant_key
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC = "urn:sandpit-openapi"


@pytest.fixture(scope="module")
def doc(srv):
    resp = httpx.get(f"{srv.endpoint}/openapi.json")  # no key
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


@pytest.fixture(scope="module")
def check(doc):
    """check(resp, method, path): the response's status is described for
    the operation (exactly, or by its `4XX`/`5XX` range) and its JSON body
    validates against that response's schema."""
    registry = Registry().with_resource(
        DOC, Resource.from_contents(doc, default_specification=DRAFT202012)
    )

    def run(resp: httpx.Response, method: str, path: str) -> dict:
        op = doc["paths"][path][method.lower()]
        code = str(resp.status_code)
        described = op["responses"].get(code) or op["responses"].get(code[0] + "XX")
        assert described, f"{method} {path} answered {code}, which is not described: {resp.text}"
        content = described.get("content", {}).get("application/json")
        if content is None:
            return {}
        schema = _rebase(content["schema"])
        OAS31Validator(schema, registry=registry).validate(resp.json())
        return schema

    def valid(component: str, instance) -> bool:
        ref = {"$ref": f"{DOC}#/components/schemas/{component}"}
        return OAS31Validator(ref, registry=registry).is_valid(instance)

    run.valid = valid
    return run


def _rebase(schema: dict) -> dict:
    """References of an operation's schema, made absolute to the document."""
    if "$ref" in schema:
        return {"$ref": DOC + schema["$ref"]}
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return {**schema, "items": {"$ref": DOC + schema["items"]["$ref"]}}
    return schema


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on an invalid document
    paths = doc["paths"]
    for path in [
        "/api/v2/sandboxes/boxes",
        "/v2/sandboxes/boxes/{name}",
        "/api/v1/admin/tenants",
        "/api/v1/workspaces/current/secrets/{key}",
        "/v1/sandboxes/{id}",
        "/v1/sandboxes/{id}/execd/command",
        "/healthz",
        "/openapi.json",
    ]:
        assert path in paths, path
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                                 "description": schemes["ApiKey"]["description"]}
    assert schemes["OpenSandboxApiKey"]["name"] == "OPEN-SANDBOX-API-KEY"
    # The document says who needs a key: probes don't, sandboxes do.
    assert paths["/healthz"]["get"].get("security", []) == []
    assert {"ApiKey": []} in paths["/api/v2/sandboxes/boxes"]["get"]["security"]


def test_described_routes_answer_what_the_document_says(srv, check):
    key = new_tenant_key(srv, "openapi")
    api = f"{srv.endpoint}/api/v2/sandboxes"
    headers = {"X-Api-Key": key}
    name = f"oa-{secrets.token_hex(3)}"
    with httpx.Client(headers=headers, timeout=120) as http:
        created = http.post(f"{api}/boxes", json={"name": name, "wait_for_ready": True})
        assert created.status_code == 201, created.text
        try:
            schema = check(created, "POST", "/api/v2/sandboxes/boxes")
            assert schema == {"$ref": DOC + "#/components/schemas/SandboxResponse"}
            check(http.get(f"{api}/boxes/{name}"), "GET", "/api/v2/sandboxes/boxes/{name}")
            check(http.get(f"{api}/boxes"), "GET", "/api/v2/sandboxes/boxes")
            check(http.get(f"{api}/boxes/{name}/status"), "GET",
                  "/api/v2/sandboxes/boxes/{name}/status")
            check(http.get(f"{api}/boxes/{name}/usage"), "GET",
                  "/api/v2/sandboxes/boxes/{name}/usage")
            # The OpenSandbox view of the same sandbox.
            os_headers = {"OPEN-SANDBOX-API-KEY": key}
            sandbox_id = created.json()["id"]
            got = httpx.get(f"{srv.endpoint}/v1/sandboxes/{sandbox_id}", headers=os_headers)
            check(got, "GET", "/v1/sandboxes/{id}")
            listed = httpx.get(f"{srv.endpoint}/v1/sandboxes", headers=os_headers)
            check(listed, "GET", "/v1/sandboxes")
            assert [s["id"] for s in listed.json()["items"]] == [sandbox_id]
        finally:
            deleted = http.delete(f"{api}/boxes/{name}")
            check(deleted, "DELETE", "/api/v2/sandboxes/boxes/{name}")


def test_errors_match_the_described_error_shapes(srv, check):
    key = new_tenant_key(srv, "openapi")
    missing = httpx.get(f"{srv.api}/boxes/no-such-box", headers={"X-Api-Key": key})
    assert missing.status_code == 404
    schema = check(missing, "GET", "/api/v2/sandboxes/boxes/{name}")
    assert schema == {"$ref": DOC + "#/components/schemas/ErrorBody"}
    os_missing = httpx.get(f"{srv.endpoint}/v1/sandboxes/no-such-box",
                           headers={"OPEN-SANDBOX-API-KEY": key})
    assert os_missing.status_code == 404
    schema = check(os_missing, "GET", "/v1/sandboxes/{id}")
    assert schema == {"$ref": DOC + "#/components/schemas/OsError"}
    # The schemas tell the shapes apart (the validation is not vacuous).
    assert not check.valid("ErrorBody", os_missing.json())
    assert not check.valid("OsError", missing.json())
    assert not check.valid("SandboxResponse", {"id": "x", "name": "y"})
    bad = httpx.post(f"{srv.endpoint}/api/v1/admin/tenants", headers={"X-Api-Key": key},
                     json={"name": "not-admin"})
    assert bad.status_code == 403
    check(bad, "POST", "/api/v1/admin/tenants")


def test_admin_and_secrets_routes_match_their_schemas(srv, check):
    admin = f"{srv.endpoint}/api/v1/admin"
    name = f"oa-{secrets.token_hex(3)}"
    created = httpx.post(f"{admin}/tenants", headers=srv.headers(), json={"name": name})
    check(created, "POST", "/api/v1/admin/tenants")
    assert created.status_code == 201
    check(httpx.get(f"{admin}/tenants", headers=srv.headers()), "GET", "/api/v1/admin/tenants")
    made = httpx.post(f"{admin}/keys", headers=srv.headers(), json={"tenant": name})
    check(made, "POST", "/api/v1/admin/keys")
    key = made.json()["key"]
    check(httpx.get(f"{admin}/keys", headers=srv.headers()), "GET", "/api/v1/admin/keys")

    secrets_url = f"{srv.endpoint}/api/v1/workspaces/current/secrets"
    put = httpx.put(f"{secrets_url}/TOKEN", headers={"X-Api-Key": key}, json={"value": "s3cret"})
    check(put, "PUT", "/api/v1/workspaces/current/secrets/{key}")
    assert put.status_code == 200
    listed = httpx.get(secrets_url, headers={"X-Api-Key": key})
    check(listed, "GET", "/api/v1/workspaces/current/secrets")
    assert listed.json() == [{"key": "TOKEN"}]
    gone = httpx.delete(f"{secrets_url}/TOKEN", headers={"X-Api-Key": key})
    check(gone, "DELETE", "/api/v1/workspaces/current/secrets/{key}")

    revoked = httpx.delete(f"{admin}/keys/{made.json()['id']}", headers=srv.headers())
    check(revoked, "DELETE", "/api/v1/admin/keys/{id}")
    assert revoked.status_code == 204
