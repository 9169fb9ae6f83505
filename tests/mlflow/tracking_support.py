"""A real `mlflow server` on loopback (sqlite backend, served artifacts) and small readers of its REST API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the e2e harness is shared, not copied

from e2e.harness import SESSION, wait_for  # noqa: E402

MLFLOW = str(Path(sys.executable).parent / "mlflow")
PYTHON_IMAGE = "opeva-test/python:3.11"
EXPERIMENT = f"opeva-test-{SESSION}"  # the controller's default experiment in these tests
UI = "http://mlflow-ui.example.test"  # only written into job_info.json links, never contacted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` as a child process group, so a test can stop it (an outage) and start it again."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 120) -> MlflowServer:
        log = open(self.root / "server.log", "ab")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen(
            [
                MLFLOW,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            if self.healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"mlflow server did not answer in {timeout} s")

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop the whole process group (the CLI and its uvicorn worker), like an outage."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group is the CLI's own
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # any worker left behind
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while self.healthy() and time.monotonic() < deadline:
            time.sleep(0.1)

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel and then hang, like a server that is alive but stuck."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    # ---- reading what the controller wrote ------------------------------------------------------------------
    def _get(self, endpoint: str, **params) -> dict[str, Any]:
        r = requests.get(f"{self.uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.uri}/api/2.0/mlflow/{endpoint}", json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def experiment_id(self, name: str) -> str | None:
        try:
            return self._get("experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
        except requests.HTTPError:
            return None

    def runs_of_job(self, experiment: str, job: str) -> list[dict[str, Any]]:
        """All runs tagged with this job, oldest first, as {"info", "tags", "params", "metrics"} dicts."""
        exp = self.experiment_id(experiment)
        if exp is None:
            return []
        body = {
            "experiment_ids": [exp],
            "filter": f"tags.`opeva.job` = '{job}'",
            "max_results": 100,
            "order_by": ["attributes.start_time ASC"],
        }
        return [_flatten(r) for r in self._post("runs/search", body).get("runs", [])]

    def run(self, run_id: str) -> dict[str, Any]:
        return _flatten(self._get("runs/get", run_id=run_id)["run"])

    def history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        return self._get("metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])

    def artifacts(self, run_id: str, path: str) -> dict[str, int]:
        files = self._get("artifacts/list", run_id=run_id, path=path).get("files", [])
        return {f["path"]: f.get("file_size", 0) for f in files if not f.get("is_dir")}

    def artifact_text(self, run_id: str, path: str) -> str:
        r = requests.get(f"{self.uri}/get-artifact", params={"run_uuid": run_id, "path": path}, timeout=10)
        r.raise_for_status()
        return r.text


def _flatten(run: dict[str, Any]) -> dict[str, Any]:
    data = run.get("data", {})
    return {
        "info": run["info"],
        "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
        "params": {p["key"]: p["value"] for p in data.get("params", [])},
        "metrics": {m["key"]: m["value"] for m in data.get("metrics", [])},
    }


def final_run(
    mlflow: MlflowServer, job: str, experiment: str = EXPERIMENT, count: int = 1, timeout: float = 30
) -> list[dict]:
    """The job's runs once `count` of them exist and none is RUNNING any more."""

    def done():
        runs = mlflow.runs_of_job(experiment, job)
        return runs if len(runs) >= count and all(r["info"]["status"] != "RUNNING" for r in runs) else None

    try:
        return wait_for(done, timeout=timeout, interval=0.3, what=f"{count} closed MLflow run(s) of {job}")
    except AssertionError as err:
        raise AssertionError(f"{err}; runs: {[r['info'] for r in mlflow.runs_of_job(experiment, job)]}") from None
