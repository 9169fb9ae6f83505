"""energaize_ui's call sequence, replayed over HTTP as its browser sends it (a CORS preflight before every call,
`Content-Type: application/json` everywhere, no token), against `opeva run` in the documented configuration:
a token set for everyone else, the UI's origin in OPEVA_CORS_ORIGINS, its network in OPEVA_OPEN_NETWORKS."""

from __future__ import annotations

import httpx
import pytest
from e2e.harness import ControllerProcess, free_port, wait_for

from .conftest import seed_folder, stack_env

pytestmark = pytest.mark.docker

UI_ORIGIN = "http://energaize.lab:5173"
TOKEN = "a-token-the-ui-never-sends"


@pytest.fixture
def open_stack(data, simulator_image):
    seed_folder(data)
    env = stack_env(
        OPEVA_API_TOKEN=TOKEN,
        OPEVA_CORS_ORIGINS=f"{UI_ORIGIN},http://localhost:3000",
        OPEVA_OPEN_NETWORKS="127.0.0.1/32",
    )
    proc = ControllerProcess(data, port=free_port(), env=env, resync=1.0).start()
    yield proc
    proc.kill()


class Browser:
    """What the UI's `http()` does: a preflight, then the call with Origin and Content-Type: application/json."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def call(self, method: str, path: str, **kw) -> httpx.Response:
        pre = self.client.options(
            path,
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 200, (path, pre.status_code, pre.text)
        assert pre.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "content-type" in pre.headers["access-control-allow-headers"].lower()
        r = self.client.request(method, path, headers={"Origin": UI_ORIGIN, "Content-Type": "application/json"}, **kw)
        assert r.headers.get("access-control-allow-origin") == UI_ORIGIN, (path, r.status_code)
        return r


def test_the_ui_call_sequence_works_without_a_token(open_stack):
    with httpx.Client(base_url=open_stack.url, timeout=10) as client:
        ui = Browser(client)
        health = client.get("/health").json()
        assert health["access"]["mode"] == "token-or-open-networks" and UI_ORIGIN in health["access"]["corsOrigins"]
        assert ui.call("GET", "/experiment-configs").json() == ["ppo.yaml"]
        assert "experiment_name" in ui.call("GET", "/experiment-config/ppo.yaml").text
        hosts = ui.call("GET", "/hosts").json()
        assert hosts["available_hosts"]
        assert ui.call("GET", "/job-images/versions", params={"limit": 50}).json()["tags"][0]["name"] == "latest"
        body = {"config_path": "ppo.yaml", "job_name": "From the UI", "submitted_by": "ana", "image_tag": "latest"}
        r = ui.call("POST", "/run-simulation", json=body)
        assert r.status_code == 200, r.text
        job = r.json()["job_id"]
        assert ui.call("GET", f"/job-info/{job}").json()["job_name"] == "From the UI"  # at once
        # listed once the controller has indexed it (immediate listing is issue 15's read-your-writes)
        wait_for(lambda: job in [j["job_id"] for j in ui.call("GET", "/jobs").json()], timeout=15, what="listed")
        ui.call("GET", "/queue")
        ui.call("GET", f"/progress/{job}")
        first = ui.call("GET", f"/logs-chunk/{job}", params={"tail_lines": 300}).json()

        def finished():
            return ui.call("GET", f"/status/{job}").json()["status"] == "finished"

        wait_for(finished, timeout=90, interval=0.5, what="the UI's job to finish")
        more = ui.call("GET", f"/logs-chunk/{job}", params={"offset": first["next_offset"], "tail_lines": 300})
        assert "job completed" in first["text"] + more.json()["text"]
        info = ui.call("GET", f"/job-info/{job}").json()
        assert info["job_name"] == "From the UI" and info["submitted_by"] == "ana"
        assert ui.call("GET", f"/result/{job}").json()["status"] == "completed"
        index = ui.call("POST", "/simulation-data/index", json={"job_id": job, "session": "latest"}).json()
        csv = ui.call("POST", "/simulation-data/file", json={"job_id": job, "relative_path": index["files"][0]})
        assert csv.text.startswith("timestamp,")
        assert "/data/datasets/demo" in ui.call("GET", f"/job-resolved-config/{job}").text
        assert ui.call("DELETE", f"/job/{job}").json()["message"] == f"Job {job} deleted successfully"
        assert job not in [j["job_id"] for j in ui.call("GET", "/jobs").json()]


def test_the_open_mode_refuses_other_origins_hosts_and_networks(open_stack):
    with httpx.Client(base_url=open_stack.url, timeout=10) as client:
        r = client.get("/jobs", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "origin" in r.json()["detail"]
        pre = client.options(
            "/run-simulation", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in pre.headers
        r = client.get("/jobs", headers={"Host": "rebound.evil.example"})  # DNS rebinding: a name a page chose
        assert r.status_code == 403 and "Host" in r.json()["detail"]
    # a client outside OPEVA_OPEN_NETWORKS still needs the token
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=open_stack.url, timeout=10, transport=transport) as other:
        assert other.get("/jobs").status_code == 401
        assert other.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
