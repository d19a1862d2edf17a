"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the test S3 server.

Object storage fails in ways a job must live through: a 500 or 503, a
connection reset before the request reaches the store, a reset after the store
applied it (the client never hears back and sends it again), a slow response.
``FaultyS3`` forwards every request to the real server (moto) and, at a set
rate and for a set number of requests, does one of those instead; then it
stops, so a job through it can finish. Every fault is recorded for the test.

>>> with FaultyS3(s3.endpoint_url, Faults(rate=0.2, count=10)) as proxy:  # doctest: +SKIP
...     options = proxy.storage_options(s3.storage_options)
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: What a fault can be: a status code the store answers instead of the object,
#: a connection reset before forwarding or after the store applied the request,
#: or a response held back ``delay_s`` seconds.
KINDS = ("500", "503", "reset", "reset-after", "delay")


@dataclass
class Faults:
    """Inject a fault into ``rate`` of the requests matching ``match`` (a regex on
    ``"METHOD /bucket/key"``), chosen at random with ``seed``; the faults take
    ``kinds`` in turn, until ``count`` were injected (``None``: never stop)."""

    rate: float = 0.2
    count: int | None = 20
    kinds: tuple[str, ...] = KINDS
    match: str = ".*"
    delay_s: float = 0.5
    seed: int = 0
    injected: list[tuple[str, str]] = field(default_factory=list)  # (kind, request)
    forwarded: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
        self._random = random.Random(self.seed)
        self._pattern = re.compile(self.match)
        self._lock = threading.Lock()

    def pick(self, request: str) -> str | None:
        """The fault for this request, or None to forward it untouched."""
        with self._lock:
            spent = self.count is not None and len(self.injected) >= self.count
            if spent or not self._pattern.search(request) or self._random.random() >= self.rate:
                self.forwarded += 1
                return None
            kind = self.kinds[len(self.injected) % len(self.kinds)]  # each kind in turn
            self.injected.append((kind, request))
            return kind

    def kinds_injected(self) -> set[str]:
        with self._lock:
            return {k for k, _ in self.injected}


_ERROR = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
          "<Message>injected by the test proxy</Message></Error>")
#: 503 as ServiceUnavailable, retried by botocore alone (s3fs adds a loop of its own
#: for SlowDown, which would multiply the attempts a test counts).
_CODES = {"500": (500, "InternalError"), "503": (503, "ServiceUnavailable")}
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        """Close with RST: the client sees a connection reset, not a clean end."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _handle(self) -> None:
        body = self._body()
        kind = self.server.faults.pick(f"{self.command} {self.path}")
        if kind == "reset":
            self._reset()
            return
        if kind in _CODES:
            status, code = _CODES[kind]
            payload = _ERROR.format(code=code).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        if kind == "delay":
            time.sleep(self.server.faults.delay_s)
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        if kind == "reset-after":  # the store applied it; the client never hears
            self._reset()
            return
        self.send_response(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in _HOP and not (k.lower() == "content-length"
                                              and self.command != "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], faults: Faults):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.faults = faults


class FaultyS3:
    """The proxy: start it with ``with``; ``endpoint_url`` is where clients go."""

    def __init__(self, upstream_url: str, faults: Faults):
        parts = urlsplit(upstream_url)
        self.faults = faults
        self._server = _Server((parts.hostname or "127.0.0.1", parts.port or 80), faults)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def storage_options(self, base: dict, **extra: object) -> dict:
        """``base`` (the S3 fixture's options) pointed at this proxy, plus ``extra``."""
        client = {**base.get("client_kwargs", {}), "endpoint_url": self.endpoint_url}
        return {**base, "client_kwargs": client, **extra}

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
