"""A Hugging Face Hub stand-in on 127.0.0.1 for tests: the HTTP API `huggingface_hub` talks to, in memory.

It serves what `hf_hub_download`, `HfApi.list_repo_files`, `create_repo` and `create_commit`
ask for: file metadata (HEAD) and content with range requests (`/resolve/`), repository
info and trees (`/api/{type}s/...`), repository creation, the pre-upload check (every file
is taken as a regular, base64-inlined file) and commits. Each commit gets a new 40-hex id;
`main` names the newest. It listens on loopback only, records every request, and can cut a
download short once (`cut_after`) to exercise the client's resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

HOST = "127.0.0.1"


@dataclass
class Repo:
    """Commits of one repository, oldest first: (commit id, {path: bytes})."""

    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)

    def files(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if revision == "main":
            return self.commits[-1] if self.commits else None
        return next((c for c in self.commits if c[0] == revision), None)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None


class LocalHub:
    """The stand-in server. Use as a context manager; `endpoint` is its base URL."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        # path in repo -> bytes to send before closing the connection, applied once.
        self.cut_after: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo_type: str, repo_id: str, files: dict[str, bytes]) -> str:
        """Commit `files` (the whole new tree) to a repository, creating it; return the commit id."""
        with self._lock:
            repo = self.repos.setdefault((repo_type, repo_id), Repo())
            sha = hashlib.sha1(f"{repo_id}{len(repo.commits)}".encode()).hexdigest()
            repo.commits.append((sha, dict(files)))
            return sha

    def downloads(self, path: str) -> list[Request]:
        """The GET requests for file `path` (any repository), in order."""
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + path)]


_RESOLVE = re.compile(r"^/(?:(datasets|models)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree|preupload|commit)/([^/]+)(?:/(.*))?$")


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _record(self) -> None:
            hub.requests.append(Request(self.command, unquote(urlparse(self.path).path),
                                        self.headers.get("Range"), self.headers.get("Authorization")))

        def do_HEAD(self) -> None:
            self._record()
            self._resolve(body=False)

        def do_GET(self) -> None:
            self._record()
            path = urlparse(self.path).path
            if path.startswith("/api/"):
                self._api_get()
            else:
                self._resolve(body=True)

        def do_POST(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = unquote(urlparse(self.path).path)
            if path == "/api/repos/create":
                payload = json.loads(body)
                repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
                repo_type = payload.get("type") or "model"
                with hub._lock:
                    hub.repos.setdefault((repo_type, repo_id), Repo())
                return self._json({"url": f"{hub.endpoint}/{repo_id}"})
            if path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            match = _API.match(path)
            if not match:
                return self._error(404, "RepoNotFound")
            kind, repo_id, action, revision, _ = match.groups()
            repo = hub.repos.get((kind[:-1], repo_id))
            if repo is None:
                return self._error(404, "RepoNotFound")
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                             for f in files]})
            if action == "commit":
                _, current = repo.files(unquote(revision)) or ("", {})
                tree = dict(current)
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        tree[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                sha = hub.add(kind[:-1], repo_id, tree)
                return self._json({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha})
            self._error(404, "EntryNotFound")

        def _api_get(self) -> None:
            url = urlparse(self.path)
            match = _API.match(unquote(url.path))
            if not match:
                return self._error(404, "RepoNotFound")
            kind, repo_id, action, revision, sub = match.groups()
            repo = hub.repos.get((kind[:-1], repo_id))
            if repo is None:
                return self._error(404, "RepoNotFound")
            found = repo.files(revision)
            if found is None:
                return self._error(404, "RevisionNotFound")
            sha, files = found
            if action == "revision":
                return self._json({"id": repo_id, "sha": sha, "private": False,
                                   "siblings": [{"rfilename": name} for name in sorted(files)]})
            if action == "tree":
                recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                return self._json(_tree(files, sub or "", recursive))
            self._error(404, "EntryNotFound")

        def _resolve(self, *, body: bool) -> None:
            match = _RESOLVE.match(unquote(urlparse(self.path).path))
            if not match:
                return self._error(404, "RepoNotFound")
            kind, repo_id, revision, name = match.groups()
            repo = hub.repos.get(((kind or "models")[:-1], repo_id))
            if repo is None:
                return self._error(404, "RepoNotFound")
            found = repo.files(revision)
            if found is None:
                return self._error(404, "RevisionNotFound")
            sha, files = found
            if name not in files:
                return self._error(404, "EntryNotFound")
            data = files[name]
            start = 0
            if body and self.headers.get("Range"):
                start = int(re.match(r"bytes=(\d+)-", self.headers["Range"]).group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", sha)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            cut = hub.cut_after.pop(name, None)
            if cut is not None:
                # Send part of the body, then drop the connection as a failing network would.
                self.wfile.write(data[start:start + cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(data[start:])

        def _json(self, value) -> None:
            raw = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str) -> None:
            raw = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

    return Handler


def _tree(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict]:
    prefix = f"{folder.rstrip('/')}/" if folder else ""
    entries, folders = [], set()
    for name in sorted(files):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if "/" in rest and not recursive:
            folders.add(prefix + rest.split("/")[0])
            continue
        entries.append({"type": "file", "path": name, "size": len(files[name]),
                        "oid": hashlib.sha1(files[name]).hexdigest()})
    return [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)] + entries
