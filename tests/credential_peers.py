"""Loopback peers for the credential tests, each speaking the real wire protocol:

- :class:`ContainerCredentials`: the EKS Pod Identity / ECS container credentials endpoint
  (``GET`` with the token file's contents in ``Authorization``; JSON with ``AccessKeyId``,
  ``SecretAccessKey``, ``Token``, ``Expiration``).
- :class:`WebIdentitySts`: STS for IRSA. moto with signature enforcement refuses botocore's
  unsigned ``AssumeRoleWithWebIdentity``, so this answers that action itself (checking the web
  identity token, minting real credentials for the role through moto's STS) and forwards every
  other request to moto byte for byte, so signed calls still verify there.

Both mint credentials by a real ``AssumeRole`` on moto, so what the proxy gets is accepted, and
checked, by moto's S3.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


Mint = Callable[[str], dict[str, Any]]  # role ARN -> STS Credentials (boto3 shape)


class _ContainerHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: ContainerCredentials = self.server.owner  # type: ignore[attr-defined]
        if self.headers.get("Authorization") != owner.token:
            self.send_response(401)
            self.end_headers()
            return
        time.sleep(owner.delay)
        if owner.fail_next > 0:
            owner.fail_next -= 1
            owner.failures += 1
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        creds = owner.mint(owner.role_arn)
        expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=owner.lifetime)
        body = json.dumps(
            {
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ).encode()
        owner.fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ContainerCredentials(_Server):
    def __init__(self, mint: Mint, role_arn: str, token: str, lifetime: float, delay: float = 0):
        self.mint = mint
        self.role_arn = role_arn
        self.token = token
        self.lifetime = lifetime
        self.delay = delay
        self.fetches = 0
        self.failures = 0
        self.fail_next = 0  # answer this many calls with 500
        super().__init__(_ContainerHandler)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/credentials"


class _StsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner: WebIdentitySts = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("Action") == "AssumeRoleWithWebIdentity":
            self._web_identity(owner, form)
            return
        # Everything else goes to moto unchanged (Host included, so signatures still verify).
        conn = http.client.HTTPConnection("127.0.0.1", owner.moto_port, timeout=30)
        conn.putrequest("POST", self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def _web_identity(self, owner: WebIdentitySts, form: dict[str, str]) -> None:
        if form.get("WebIdentityToken") != owner.expected_token():
            body = (
                b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                b"<Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                b"<Message>bad token</Message></Error></ErrorResponse>"
            )
            self.send_response(400)
        else:
            owner.web_identity_calls += 1
            creds = owner.mint(form["RoleArn"])
            expiration = creds["Expiration"]
            if isinstance(expiration, dt.datetime):
                expiration = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
            role = form["RoleArn"].rsplit("/", 1)[-1]
            session = escape(form.get("RoleSessionName", "irsa"))
            body = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/{escape(role)}/{session}</Arn>
      <AssumedRoleId>AROA000000000000000:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{escape(creds["SessionToken"])}</SessionToken>
      <SecretAccessKey>{escape(creds["SecretAccessKey"])}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{escape(creds["AccessKeyId"])}</AccessKeyId>
    </Credentials>
    <Provider>oidc.eks.example</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""".encode()
            self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WebIdentitySts(_Server):
    def __init__(self, mint: Mint, moto_port: int, expected_token: Callable[[], str]) -> None:
        self.mint = mint
        self.moto_port = moto_port
        self.expected_token = expected_token
        self.web_identity_calls = 0
        super().__init__(_StsHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"
