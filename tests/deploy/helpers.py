"""Helpers for the deployment tests: building, running and probing the controller image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e.harness import SESSION, TEST_LABEL, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_IMAGE = os.environ.get("OPEVA_TEST_BASE_IMAGE", "opeva-test/base:bookworm")
IMAGE = "opeva-test/controller:deploy"
OPEVA_UID = 10001  # the Dockerfile's default
TOKEN = "deploy-test-token"
SIZE_TARGET_MB = 250  # over the base

REPORT: dict[str, str] = {}  # shown in the terminal summary


def sh(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout, **kw)


def image_size(ref: str) -> int:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", ref).stdout.strip())


def pip_ca_bundle() -> Path | None:
    """The CA bundle pip on this machine trusts (a TLS-intercepting proxy's CA lives there), for the builder."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return Path(os.environ[var])
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    return system if system.is_file() else None


def build_context(dest: Path) -> Path:
    """The build context the repository's .dockerignore allows, plus pip-ca.pem when this machine has one."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in ("controller", "api", "cli"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    ca = pip_ca_bundle()
    if ca:
        shutil.copy2(ca, dest / "pip-ca.pem")
    return dest


def http(port: int, path: str, token: str | None = None, timeout: float = 5) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None
    except (urllib.error.URLError, OSError):  # not listening (yet)
        return 0, None


def socket_gid() -> int:
    return os.stat("/var/run/docker.sock").st_gid


def make_data_folder() -> Path:
    """A data folder under /tmp the image's user can reach and write (pytest's tmp_path is root-only)."""
    top = Path(tempfile.mkdtemp(prefix=f"opeva-deploy-{SESSION}-", dir="/tmp"))
    top.chmod(0o755)
    data = top / "data"
    (data / "specs").mkdir(parents=True)
    for p in (data, data / "specs"):
        os.chown(p, OPEVA_UID, OPEVA_UID)
    return data


def cleanup() -> None:
    ids = sh("docker", "ps", "-aq", "--filter", f"label={TEST_LABEL}={SESSION}", check=False).stdout.split()
    if ids:
        sh("docker", "rm", "-f", *ids, check=False)


class ControllerContainer:
    """The image run as users run it: socket, data folder at the same path inside and out, token, 0.0.0.0."""

    def __init__(self, image: str, data: Path):
        self.image, self.data, self.port = image, data, free_port()
        self.name = f"opeva-deploy-{SESSION}"

    def start(self) -> ControllerContainer:
        sh(
            "docker",
            "run",
            "-d",
            "--name",
            self.name,
            "--label",
            f"{TEST_LABEL}={SESSION}",
            "--network",
            "host",
            "--group-add",
            str(socket_gid()),
            "--health-interval",
            "2s",
            "--health-start-period",
            "60s",
            "--health-timeout",
            "5s",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            f"{self.data}:{self.data}",
            "-e",
            f"OPEVA_DATA={self.data}",
            "-e",
            f"OPEVA_API_TOKEN={TOKEN}",
            "-e",
            f"OPEVA_PORT={self.port}",
            "-e",
            "OPEVA_RESYNC_SECONDS=2",
            "-e",
            "OPEVA_KEEP_FINISHED_CONTAINERS=1",
            self.image,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            if self.state().get("Status") != "running":
                raise AssertionError(f"controller container is {self.state().get('Status')}:\n{self.logs()}")
            return http(self.port, "/health")[0] == 200

        wait_for(ready, timeout, what="the controller container's API")

    def state(self) -> dict:
        out = sh("docker", "inspect", "-f", "{{json .State}}", self.name, check=False).stdout
        return json.loads(out) if out.strip() else {}

    def logs(self) -> str:
        p = sh("docker", "logs", "--tail", "200", self.name, check=False)
        return p.stdout + p.stderr

    def exec(self, *cmd: str) -> subprocess.CompletedProcess:
        return sh("docker", "exec", self.name, *cmd, check=False)
