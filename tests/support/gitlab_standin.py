"""A stand-in for the few GitLab REST endpoints `mlops check-credentials --gitlab` and `mlops variables
upload` use, on 127.0.0.1, recording every request (what GitLab would receive). Not GitLab: it answers
in the documented shapes (docs.gitlab.com/api/projects/, project_level_variables/, pipeline_triggers/,
members/, personal_access_tokens/) so that python-gitlab, the real client, talks to it unchanged.
The gap to a real GitLab (permissions, validation of values) is written in the template README.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

API = "/api/v4"


@dataclass
class Request:
    method: str
    path: str  # decoded, without the query
    query: dict[str, str]
    body: dict
    token: str | None


@dataclass
class GitLabStandIn:
    """One project (`path`, id 7) with its settings, stored variables, trigger tokens and members.
    Use as a context manager; `url` is the base to give as --url."""

    path: str = "group/forecasting-experiments"
    token: str = "glpat-" + "S" * 20  # the only token it accepts (a stand-in value, not a secret)
    scopes: tuple[str, ...] = ("api",)
    settings: dict = field(
        default_factory=lambda: {
            "restrict_user_defined_variables": True,
            "ci_pipeline_variables_minimum_override_role": "developer",
        }
    )
    variables: list[dict] = field(default_factory=list)  # key, environment_scope, value, ...
    triggers: list[dict] = field(default_factory=list)  # description, owner {id, username}
    members: dict[int, int] = field(default_factory=dict)  # user id -> access_level
    requests: list[Request] = field(default_factory=list)

    def __enter__(self) -> GitLabStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet; the test reads `requests`
                pass

            def _answer(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                req = Request(self.command, unquote(split.path), query, body, self.headers.get("PRIVATE-TOKEN"))
                standin.requests.append(req)
                if req.token != standin.token:
                    return self._send(401, {"message": "401 Unauthorized"})
                status, doc = standin.route(req)
                self._send(status, doc)

            def _send(self, status: int, doc) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def project(self) -> dict:
        return {"id": 7, "path_with_namespace": self.path, **self.settings}

    def route(self, req: Request) -> tuple[int, object]:
        """(status, JSON document) for one request, changing the state as GitLab would."""
        names = (API + "/projects/7", API + "/projects/" + self.path)
        parts = req.path.split("/")
        if req.method == "GET" and req.path == API + "/personal_access_tokens/self":
            return 200, {"id": 1, "name": "mlops", "scopes": list(self.scopes), "expires_at": None, "active": True}
        if req.method == "GET" and req.path in names:
            return 200, self.project()
        if req.path == API + "/projects/7/variables":
            if req.method == "GET":
                return 200, [{**v, "value": None} for v in self.variables]  # values never needed by mlops
            if req.method == "POST":
                key, scope = req.body.get("key"), req.body.get("environment_scope", "*")
                if any((v["key"], v["environment_scope"]) == (key, scope) for v in self.variables):
                    return 400, {"message": {"key": [f"({scope}) has already been taken"]}}
                self.variables.append({**req.body, "environment_scope": scope})
                return 201, {**req.body, "value": None}
        if req.method == "PUT" and req.path.startswith(API + "/projects/7/variables/"):
            scope = req.query.get("filter[environment_scope]", "*")
            for v in self.variables:
                if (v["key"], v["environment_scope"]) == (parts[-1], scope):
                    v.update(req.body)
                    return 200, {**v, "value": None}
            return 404, {"message": "404 Variable Not Found"}
        if req.method == "GET" and req.path == API + "/projects/7/triggers":
            return 200, [{"id": i + 1, **t} for i, t in enumerate(self.triggers)]
        if req.method == "GET" and req.path.startswith(API + "/projects/7/members/all/"):
            uid = int(parts[-1])
            if uid in self.members:
                return 200, {"id": uid, "username": f"user{uid}", "access_level": self.members[uid]}
        return 404, {"message": "404 Not Found"}
