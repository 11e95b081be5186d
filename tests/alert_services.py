"""Real receivers of notifications for the alerting tests.

* ``WebhookServer``: a local HTTP server standing in for Slack or a generic webhook
  receiver; it answers with a scripted sequence of responses (200, 500, 429 with
  Retry-After, 404 ...) and records every request it received.
* ``SmtpServer``: a real SMTP server (aiosmtpd) on a free port, collecting messages.

Their fixtures (``webhook_server``, ``smtp_server``) are in tests/fixtures/receivers.py.
"""
from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.services import free_port


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    hold: threading.Event | None = None  # answer only once the test sets it (a hung receiver)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class WebhookServer:
    """Answers POSTs with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.received: list[Received] = []
        self.arrived: list[Received] = []  # requests whose answer has started (received: answered)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server._lock:
                    reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                    server.arrived.append(Received(self.path, dict(self.headers.items()), body))
                if reply.hold is not None:
                    reply.hold.wait(60)
                if reply.delay_seconds:
                    time.sleep(reply.delay_seconds)
                with server._lock:
                    server.received.append(Received(self.path, dict(self.headers.items()), body))
                data = reply.body.encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str = "/services/T000/B000/secret-token-XYZ") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)

    def texts(self) -> list[str]:
        return [r.json().get("text", "") for r in self.received]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SmtpServer:
    """aiosmtpd on a free port; ``messages`` are parsed email.message.EmailMessage objects."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: set[str] = set()
        server = self

        class Handler:
            async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):  # noqa: N802
                if address in server.refuse:
                    return "550 5.1.1 no such user"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802
                server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                server.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 Message accepted"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
