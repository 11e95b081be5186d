"""A local HTTP server answering the Confluent Schema Registry endpoints the monitor
reads (GET /subjects, /subjects/{s}/versions, /subjects/{s}/versions/{v}, /config,
/config/{s}), from a dict it holds, with optional Basic auth: a real server on a free
port, as the registry is to the monitor."""
from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RegistryServer:
    def __init__(self, subjects: dict[str, dict[int, int]], compatibility: dict[str, str] | None = None,
                 global_level: str = "BACKWARD", credentials: tuple[str, str] | None = None) -> None:
        """``subjects``: subject -> {version: schema id}; ``compatibility``: per-subject levels."""
        self.subjects = subjects
        self.compatibility = compatibility or {}
        self.global_level = global_level
        self.credentials = credentials
        self.paths: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                registry.paths.append(self.path)
                if registry.credentials:
                    expected = "Basic " + base64.b64encode(":".join(registry.credentials).encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self._answer(401, {"error_code": 401, "message": "Unauthorized"})
                        return
                status, body = registry.answer([urllib.parse.unquote(p) for p in self.path.split("?")[0].split("/")[1:]])
                self._answer(status, body)

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, parts: list[str]) -> tuple[int, object]:
        not_found = (404, {"error_code": 40401, "message": "Subject not found."})
        if parts == ["subjects"]:
            return 200, sorted(self.subjects)
        if parts == ["config"]:
            return 200, {"compatibilityLevel": self.global_level}
        if len(parts) == 2 and parts[0] == "config":
            level = self.compatibility.get(parts[1])
            return (200, {"compatibilityLevel": level}) if level else (404, {"error_code": 40408, "message": "none"})
        if len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions" and parts[1] in self.subjects:
            versions = self.subjects[parts[1]]
            if len(parts) == 3:
                return 200, sorted(versions)
            if len(parts) == 4 and parts[3].isdigit() and int(parts[3]) in versions:
                number = int(parts[3])
                return 200, {"subject": parts[1], "version": number, "id": versions[number], "schema": "{}"}
        return not_found

    def close(self) -> None:
        self.server.shutdown()
