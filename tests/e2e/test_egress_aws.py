"""`aws_auth` rules: the egress proxy signs a sandbox's AWS requests with
SigV4 using credentials that never enter the sandbox.

A local HTTPS server plays the AWS endpoints (`--egress-resolve` sends the
`*.amazonaws.com` names used here to it, `--egress-upstream-ca` makes the
proxy trust its test CA) and checks every request's signature with an
independent implementation, botocore's `SigV4Auth`, recomputing it from the
request exactly as it arrived: method, path, query, the signed headers and
the SHA-256 of the body it received.
"""

from __future__ import annotations

import re

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from langsmith.sandbox import aws_auth, opaque_secret, proxy_config, workspace_secret
from helpers import QuietHandler, egress_upstream_server, sdk_client_with_secret
from helpers import transparent_curl as curl

ACCESS_KEY = "AKIASANDPITTEST0001"
SECRET_KEY = "sk-sandpit-9c1f0e7a2b4d6f8e0a1c3e5g"
HOSTS = ["sqs.us-east-1.amazonaws.com", "bkt.s3.us-west-2.amazonaws.com", "api.example.test"]
EGRESS_PORTS = "27443,27080,27053"
AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<sig>[0-9a-f]{64})"
)


def verify(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """'ok SERVICE REGION' if botocore computes the same signature, else why not."""
    match = AUTH_RE.fullmatch(headers.get("authorization", ""))
    if not match:
        return f"bad authorization header: {headers.get('authorization')!r}"
    if match["key"] != ACCESS_KEY:
        return f"signed with access key {match['key']}"
    signed = match["signed"].split(";")
    request = AWSRequest(
        method=method,
        url=f"https://{host}{path}",
        data=body,
        headers={name: headers[name] for name in signed if name in headers},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), match["service"], match["region"])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if expected != match["sig"]:
        return "SignatureDoesNotMatch"
    return f"ok {match['service']} {match['region']}"


class FakeAws(QuietHandler):
    protocol_version = "HTTP/1.1"
    results: list[str] = []

    def _handle(self):
        body = self.read_body()
        headers = self.lower_headers()
        host = headers.get("host", "").split(":")[0]
        result = verify(self.command, host, self.path, headers, body)
        FakeAws.results.append(result)
        self.reply(200 if result.startswith("ok") else 403, f"{result}\n".encode())

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture(scope="module")
def aws_server():
    with egress_upstream_server(FakeAws, HOSTS, EGRESS_PORTS, "aws") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(aws_server):
    with sdk_client_with_secret(aws_server, "AWS_SK", SECRET_KEY) as c:
        yield c


DUMMY_AUTH = "-H 'Authorization: AWS4-HMAC-SHA256 Credential=AKIDUMMY/20200101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00'"


def test_aws_requests_are_signed_outside_the_sandbox(client, aws_server):
    rules = [aws_auth(access_key_id=opaque_secret(ACCESS_KEY), secret_access_key=workspace_secret("AWS_SK"),
                      env_vars={"AWS_ACCESS_KEY_ID": "dummy", "AWS_SECRET_ACCESS_KEY": "dummy"})]
    sb = client.create_sandbox(name="aws", proxy_config=proxy_config(rules=rules))
    try:
        # A query API call, replacing the dummy signature the tool made.
        rc, out = curl(sb, f"-X POST {DUMMY_AUTH} -d 'Action=ListQueues&Version=2012-11-05' "
                           "'https://sqs.us-east-1.amazonaws.com/?x=1&a=2'")
        assert rc == 0 and out.strip() == "ok sqs us-east-1", out
        # S3, virtual-hosted style, with a body: the payload hash is checked.
        sb.write("/tmp/blob", b"\x00\x01payload" * 5000)
        rc, out = curl(sb, "-X PUT --data-binary @/tmp/blob https://bkt.s3.us-west-2.amazonaws.com/dir/key.bin")
        assert rc == 0 and out.strip() == "ok s3 us-west-2", out
        # A host no aws rule covers is not intercepted: the sandbox sees the
        # upstream's own certificate, which it does not trust.
        rc, out = curl(sb, "https://api.example.test/")
        assert rc == 60, out
        # The credentials are nowhere in the sandbox or the API's answers.
        probe = sb.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
                       f"grep -rIl -e {ACCESS_KEY} -e {SECRET_KEY} /etc /tmp /root /home /run 2>/dev/null; true",
                       timeout=120)
        assert ACCESS_KEY not in probe.stdout and SECRET_KEY not in probe.stdout
        # The rule's env_vars (dummy credentials for tools) are set.
        assert "AWS_ACCESS_KEY_ID=dummy" in probe.stdout.splitlines()
        shown = httpx.get(f"{aws_server.api}/boxes/aws", headers=aws_server.headers()).json()
        assert ACCESS_KEY not in str(shown) and SECRET_KEY not in str(shown)
        assert shown["proxy_config"]["rules"][0]["aws"]["access_key_id"]["is_set"] is True
    finally:
        client.delete_sandbox("aws")


def test_a_wrong_secret_gives_a_signature_aws_refuses(client, aws_server):
    """The check can fail: signing with another secret is caught by botocore."""
    rules = [aws_auth(access_key_id=opaque_secret(ACCESS_KEY), secret_access_key=opaque_secret("not-the-secret"))]
    sb = client.create_sandbox(name="aws-wrong", proxy_config=proxy_config(rules=rules))
    try:
        rc, out = curl(sb, "https://sqs.us-east-1.amazonaws.com/?Action=ListQueues")
        assert rc == 0 and out.strip() == "SignatureDoesNotMatch", out
    finally:
        client.delete_sandbox("aws-wrong")


def test_bad_aws_rules_are_refused(client):
    from langsmith.sandbox import SandboxClientError

    bad = [
        {"name": "aws", "type": "aws", "aws": {"role_arn": "arn:aws:iam::123456789012:role/x"}},
        {"name": "aws", "type": "aws", "aws": {"access_key_id": {"type": "plaintext", "value": "A"},
                                                "secret_access_key": {"type": "opaque", "value": "S"}}},
        {"name": "aws", "type": "aws", "aws": {"access_key_id": {"type": "opaque", "value": "A"}}},
    ]
    for rule in bad:
        with pytest.raises(SandboxClientError) as err:
            client.create_sandbox(name="aws-bad", proxy_config={"rules": [rule]})
        assert "aws" in str(err.value)
