"""Real git remotes for the tests: a bare repository with a working clone that commits and pushes, and a smart-HTTP
server on loopback (`git http-backend` behind Python's HTTP server, with basic auth) that can be stopped and restarted.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


class Repo:
    """A bare repository (the remote) and a clone to commit in; `commit` pushes and returns the new commit."""

    def __init__(self, root: Path, branch: str = "main"):
        root.mkdir(parents=True, exist_ok=True)
        self.bare = root / "remote.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "-b", branch, str(self.bare))
        git(root, "init", "--quiet", "-b", branch, str(self.work))
        git(self.work, "remote", "add", "origin", str(self.bare))
        self.branch = branch

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def write(self, rel: str, doc: dict[str, Any] | str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))

    def remove(self, rel: str) -> None:
        (self.work / rel).unlink()

    def commit(self, message: str = "change", branch: str | None = None) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch or self.branch}")
        return git(self.work, "rev-parse", "HEAD")

    def force_push(self, commit: str) -> None:
        """Move the branch back to `commit` (a history rewrite) and push it with force."""
        git(self.work, "reset", "--quiet", "--hard", commit)
        git(self.work, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{self.branch}")


class HttpGitServer:
    """`git http-backend` over HTTP on 127.0.0.1 with basic auth; `stop()` and `start()` again on the same port."""

    def __init__(self, project_root: Path, user: str, password: str, port: int = 0):
        self.project_root = project_root
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.port = port
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.headers_seen: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def url(self, repo: str = "remote.git") -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def start(self) -> HttpGitServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                server.headers_seen.append(str(self.headers))
                if self.headers.get("Authorization") != server.auth:
                    server.requests.append((self.command, self.path, 401))
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    **os.environ,
                    "GIT_PROJECT_ROOT": str(server.project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "test",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                if self.headers.get("Content-Encoding") == "gzip":
                    env["HTTP_CONTENT_ENCODING"] = "gzip"
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode().split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                server.requests.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
