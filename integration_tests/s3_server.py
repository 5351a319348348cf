"""A real S3-protocol server on 127.0.0.1 for the tests, and a proxy in front of it that injects
faults.

`S3Server` runs moto's standalone server (`moto[server]`, a test dependency) in its own process,
on a free port: its state is its own, and with `enforce_auth=True` it checks signatures and IAM
policies as AWS does, which is how the tests meet `AccessDenied` and unknown access keys. The
server process creates the IAM users it needs before it starts enforcing (moto's
`INITIAL_NO_AUTH_ACTION_COUNT`) and prints their keys with its port.

`S3FaultProxy` forwards every request to a server unchanged, except the next ones it is told to
fail: an S3 error answer (503 SlowDown, or any status and code) or a dropped connection.

Run the server alone with `python -m integration_tests.s3_server` (it prints its port).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ANY_KEY = {"aws_access_key_id": "test-access-key", "aws_secret_access_key": "test-secret-key"}
"""Any key works while moto does not enforce authentication."""
BOOTSTRAP_ACTIONS = 5
"""The requests `_bootstrap_users` makes before moto starts enforcing authentication."""
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class S3Server:
    """moto's S3 (and IAM, STS) on 127.0.0.1, in a child process, for a `with` block."""

    def __init__(self, enforce_auth: bool = False) -> None:
        self.enforce_auth = enforce_auth
        self.url = ""
        self.keys: dict[str, dict[str, str]] = {}
        """With enforce_auth: `admin` (allowed everything) and `denied` (no policy at all)."""
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "integration_tests.s3_server"]
        if self.enforce_auth:
            command.append("--enforce-auth")
        self._process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = json.loads(self._process.stdout.readline())  # blocks until the server is up
        self.url = f"http://127.0.0.1:{ready['port']}"
        self.keys = ready["keys"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process is not None
        self._process.stdin.close()  # the child ends when its stdin closes
        self._process.wait(timeout=30)

    def credentials(self) -> dict[str, str]:
        """Keys that may do everything: the admin's under enforce_auth, else any."""
        return self.keys["admin"] if self.enforce_auth else ANY_KEY

    def client(self, service: str = "s3", region: str = REGION, **keys: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
            **(keys or self.credentials()),
        )

    def create_bucket(self, name: str, region: str = REGION) -> None:
        location = {} if region == REGION else {"LocationConstraint": region}
        self.client(region=region).create_bucket(
            Bucket=name, **({"CreateBucketConfiguration": location} if location else {})
        )

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object of the bucket (under `prefix`): key → body, in key order."""
        client = self.client()
        return {
            key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
            for key in self.keys_in(bucket, prefix)
        }

    def keys_in(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            entry["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
        )


class S3FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `target`, for a `with` block.

    `fail_next(n)` answers the next n requests with an S3 error (503 SlowDown by default);
    `drop_next(n)` closes their connections without an answer. `requests` lists the method
    and path of every request that reached the proxy.
    """

    def __init__(self, target: str) -> None:
        self._target = urlsplit(target)
        self._lock = threading.Lock()
        self._faults: list[tuple[str, int, str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        """The headers of each request in `requests`, lower-case names."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(
        self, count: int, status: int = 503, code: str = "SlowDown", message: str = "Slow Down"
    ) -> None:
        with self._lock:
            self._faults.extend([("answer", status, code, message)] * count)

    def drop_next(self, count: int) -> None:
        with self._lock:
            self._faults.extend([("drop", 0, "", "")] * count)

    def _next_fault(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[str, int, str, str] | None:
        with self._lock:
            self.requests.append((method, path))
            self.headers.append(headers)
            return self._faults.pop(0) if self._faults else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                fault = proxy._next_fault(self.command, self.path, headers)
                if fault is None:
                    self._forward(body)
                elif fault[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                else:
                    self._error(*fault[1:])

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(
                    proxy._target.hostname, proxy._target.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            def _error(self, status: int, code: str, message: str) -> None:
                payload = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>{message}</Message><RequestId>fault</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler


def _bootstrap_users(url: str) -> dict[str, dict[str, str]]:
    """An `admin` allowed everything and a `denied` user without any policy; exactly
    BOOTSTRAP_ACTIONS requests, made before moto enforces authentication."""
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name=REGION, **ANY_KEY)
    keys = {}
    for user in ("admin", "denied"):
        iam.create_user(UserName=user)
        if user == "admin":
            iam.put_user_policy(
                UserName=user, PolicyName="allow-all", PolicyDocument=json.dumps(ALLOW_ALL)
            )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    return keys


def main() -> None:
    """Serve until the parent closes our stdin (or exits); the first stdout line is the port
    and the users' keys, as JSON."""
    enforce_auth = "--enforce-auth" in sys.argv[1:]
    if enforce_auth:  # read by moto when it is imported
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(BOOTSTRAP_ACTIONS)
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    keys = _bootstrap_users(f"http://127.0.0.1:{port}") if enforce_auth else {}
    print(json.dumps({"port": port, "keys": keys}), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
