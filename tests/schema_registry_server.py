"""A local HTTP server answering the Confluent Schema Registry endpoints the monitor
reads (GET /subjects, /subjects/{s}/versions, /subjects/{s}/versions/{v}, /config,
/config/{s}), from a dict it holds, with optional Basic auth: a real server on a free
port, as the registry is to the monitor."""
from __future__ import annotations

import base64
import urllib.parse

from tests.json_http import JsonHandler, serve


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

        class Handler(JsonHandler):
            content_type = "application/vnd.schemaregistry.v1+json"

            def do_GET(self) -> None:  # noqa: N802
                registry.paths.append(self.path)
                if registry.credentials:
                    expected = "Basic " + base64.b64encode(":".join(registry.credentials).encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self.answer(401, {"error_code": 401, "message": "Unauthorized"})
                        return
                status, body = registry.answer([urllib.parse.unquote(p) for p in self.path.split("?")[0].split("/")[1:]])
                self.answer(status, body)

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

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
