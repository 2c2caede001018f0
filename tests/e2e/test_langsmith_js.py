"""The JavaScript langsmith SDK (`langsmith@0.12.0`, `langsmith/sandbox`):
its README sandbox examples (tests/e2e/js/examples.mjs) against the session
server, with the optional `ws` package (commands over the WebSocket) and
without it (commands posted to `{dataplane}/execute`), issue 17 item 6.

The SDK is installed with `npm ci` from tests/e2e/js/package-lock.json into
a cache dir outside the clone (scripts/test does it first; this module does
it if the dir is missing), once with and once without optional packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

JS = Path(__file__).parent / "js"


def js_install(omit_optional: bool) -> Path:
    """`npm ci` of tests/e2e/js into ~/.cache/sandpit/js-<lock hash>[-nows]."""
    lock = (JS / "package-lock.json").read_bytes()
    suffix = "-nows" if omit_optional else ""
    env_name = "SANDPIT_JS_NOWS_DIR" if omit_optional else "SANDPIT_JS_DIR"
    default = Path.home() / ".cache/sandpit" / f"js-{hashlib.sha256(lock).hexdigest()[:12]}{suffix}"
    target = Path(os.environ.get(env_name) or default)
    if not (target / ".complete").exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(JS / name, target / name)
        cmd = ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"]
        if omit_optional:
            cmd.append("--omit=optional")
        subprocess.run(cmd, cwd=target, check=True, capture_output=True, timeout=600)
        (target / ".complete").touch()
    return target


def fake_service_account() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "sandpit-test", "private_key_id": "k1",
                       "private_key": pem, "client_email": "robot@sandpit-test.iam.gserviceaccount.com",
                       "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.fixture(scope="module")
def aws_secrets(srv):
    """The workspace secrets the README's AWS example names."""
    base = f"{srv.endpoint}/api/v1/workspaces/current/secrets"
    for key, value in (("SANDBOX_AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                       ("SANDBOX_AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")):
        resp = httpx.put(f"{base}/{key}", headers=srv.headers(), json={"value": value})
        assert resp.status_code in (200, 201, 204), resp.text
    yield
    for key in ("SANDBOX_AWS_ACCESS_KEY_ID", "SANDBOX_AWS_SECRET_ACCESS_KEY"):
        httpx.delete(f"{base}/{key}", headers=srv.headers())


@pytest.mark.parametrize("with_ws", [True, False], ids=["ws", "no-ws"])
def test_readme_examples(srv, aws_secrets, with_ws):
    install = js_install(omit_optional=not with_ws)
    script = install / "examples.mjs"
    shutil.copy2(JS / "examples.mjs", script)
    env = dict(os.environ, SANDPIT_API=srv.api, SANDPIT_KEY=srv.api_key,
               SANDPIT_PREFIX="js-" + secrets.token_hex(3), SANDPIT_GCP_SA=fake_service_account())
    done = subprocess.run(["node", str(script)], cwd=install, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ws"] is with_ws
    assert out["basic"] == "hello\n"
    assert out["read"] == "from js"
    assert out["exitCode"] == 3
    assert out["runConfig"] == "/tmp\nhi\n65534\n", out
    assert out["createRunConfig"] == "yes\n/var\n", out
    assert out["aws"] == "aws-ok\n" and out["awsRules"] == 1, out
    assert out["gcp"] == "gcp-ok\n", out
    assert out["refused"] and "preserve_memory_on_stop" in out["refused"], out
    assert out["registry"] == {"name": out["registry"]["name"], "url": "registry.example.com",
                               "hasPassword": False}, out
