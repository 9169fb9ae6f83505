"""The controller image as users run it: against the host's Docker engine, restarted, and with a wrong mount."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from e2e.harness import SESSION, TEST_LABEL, free_port, job_name, shell_spec, wait_for, wait_phase, write_spec
from e2e.harness import containers as job_containers

from .helpers import (
    BASE_IMAGE,
    OPEVA_UID,
    ROOT,
    SIZE_TARGET_MB,
    TOKEN,
    ControllerContainer,
    cleanup,
    http,
    image_size,
    make_data_folder,
    sh,
    socket_gid,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def data() -> Path:
    d = make_data_folder()
    yield d
    cleanup()
    shutil.rmtree(d.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def controller(deploy_image, data):
    c = ControllerContainer(deploy_image, data).start()
    yield c
    sh("docker", "rm", "-f", c.name, check=False)


def test_image_is_lean_and_unprivileged(deploy_image):
    over = (image_size(deploy_image) - image_size(BASE_IMAGE)) / 1e6
    assert over < SIZE_TARGET_MB, f"the image adds {over:.0f} MB to its base (target < {SIZE_TARGET_MB} MB)"
    cfg = json.loads(sh("docker", "image", "inspect", "-f", "{{json .Config}}", deploy_image).stdout)
    assert cfg["User"] == "opeva"
    assert cfg["Entrypoint"] == ["opeva", "run", "--host", "0.0.0.0"]
    assert "/health" in " ".join(cfg["Healthcheck"]["Test"])
    probe = sh(
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        deploy_image,
        "-c",
        "id -u; for t in gcc cc make; do command -v $t; done; ls /opt/opeva/bin; "
        "python3 -c 'import pytest' 2>/dev/null && echo has-pytest; python3 -c 'import mlflow' && echo mlflow; "
        "git --version >/dev/null && echo has-git",
        check=False,
    )
    lines = probe.stdout.split()
    assert lines[0] == str(OPEVA_UID)
    assert not [ln for ln in lines if ln.endswith(("/gcc", "/cc", "/make"))], probe.stdout  # no compilers
    # The venv holds the package and its runtime dependencies only: no installers, no test dependencies.
    assert not {"pip", "pip3", "easy_install"} & set(lines), probe.stdout
    assert "has-pytest" not in lines and "mlflow" in lines and "opeva" in lines, probe.stdout
    assert "has-git" in lines, "a data folder that follows a git repository needs git in the image"


def test_job_runs_and_is_recorded(controller, data):
    (data / "marker.txt").write_text(f"marker-{SESSION}\n")
    assert http(controller.port, "/jobs")[0] == 401  # beyond loopback only with the token
    name = job_name("hello")
    write_spec(data, shell_spec(name, "cat /data/marker.txt; echo hello-from-the-job"))
    st = wait_phase(data, name, "Succeeded", "Failed")
    log = (data / "jobs" / name / "logs" / f"{name}.log").read_text()
    assert st["phase"] == "Succeeded", f"{st}\n{log}\n{controller.logs()}"
    assert f"marker-{SESSION}" in log, "the job did not see the data folder at /data (host path)"
    assert "hello-from-the-job" in log
    assert json.loads((data / "jobs" / name / "job_info.json").read_text())
    wait_for(
        lambda: name in (data / "job_track.json").read_text() if (data / "job_track.json").exists() else False,
        10,
        what="job_track.json",
    )
    code, jobs = http(controller.port, "/jobs", TOKEN)
    assert code == 200 and name in json.dumps(jobs)
    # The image's HEALTHCHECK (run every 2 s here) reports healthy.
    wait_for(lambda: controller.state().get("Health", {}).get("Status") == "healthy", 30, what="healthy")


def test_restart_adopts_a_running_job(controller, data):
    name = job_name("across")
    write_spec(data, shell_spec(name, "echo job-begins; sleep 8; echo job-ends"))
    wait_phase(data, name, "Running", timeout=30)
    t0 = time.monotonic()
    sh("docker", "stop", "-t", "20", controller.name)
    stop_seconds = time.monotonic() - t0
    assert stop_seconds < 15, f"docker stop took {stop_seconds:.0f} s (SIGTERM not handled?)"
    assert controller.state().get("ExitCode") == 0, controller.logs()
    running = job_containers(name)
    assert len(running) == 1 and running[0]["State"] == "running", "stopping the controller stopped the job"
    sh("docker", "start", controller.name)
    controller.wait_ready()
    st = wait_phase(data, name, "Succeeded", "Failed", timeout=60)
    log = (data / "jobs" / name / "logs" / f"{name}.log").read_text()
    assert st["phase"] == "Succeeded" and st["attempts"] == 1, f"{st}\n{log}"
    assert len(job_containers(name)) == 1, "a second container was started"
    lines = log.splitlines()
    assert lines.count("job-begins") == 1 and lines.count("job-ends") == 1, log  # one attempt, complete, no dupes


def test_split_api_container_and_controller_healthcheck(deploy_image, controller, data):
    """docker-compose.split.yml's pieces: `opeva api` alone over the folder, the heartbeat healthcheck."""
    port = free_port()
    api = f"opeva-deploy-api-{SESSION}"
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        api,
        "--label",
        f"{TEST_LABEL}={SESSION}",
        "--network",
        "host",
        "--entrypoint",
        "opeva",
        "-v",
        f"{data}:{data}",
        "-e",
        f"OPEVA_DATA={data}",
        "-e",
        f"OPEVA_API_TOKEN={TOKEN}",
        deploy_image,
        "api",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    )
    try:
        wait_for(lambda: http(port, "/health")[0] == 200, 30, what="the API-only container")
        code, jobs = http(port, "/jobs", TOKEN)
        assert code == 200 and job_name("hello") in json.dumps(jobs)
        assert http(port, "/jobs")[0] == 401
    finally:
        sh("docker", "rm", "-f", api, check=False)
    split = yaml.safe_load((ROOT / "docker-compose.split.yml").read_text())
    test = split["services"]["controller"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    probe = controller.exec(*test[1:])
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_mismatched_host_path_is_refused(deploy_image):
    """The seed's `-v HOST:/data` without OPEVA_HOST_DATA: a clear error, not jobs with an empty /data."""
    data = make_data_folder()
    base = [
        "docker",
        "run",
        "--rm",
        "--label",
        f"{TEST_LABEL}={SESSION}",
        "-v",
        f"{data}:/data",
        "-e",
        "OPEVA_DATA=/data",
    ]
    try:
        # From /proc/self/mountinfo (no Docker socket).
        p = sh(*base, "--network", "none", deploy_image, "--no-api", check=False, timeout=60)
        assert p.returncode != 0
        assert f"OPEVA_HOST_DATA={data}" in p.stderr, p.stderr
        # From Docker's record of the container's mounts (socket reachable): also refused, same advice.
        p = sh(
            *base,
            "--network",
            "none",
            "--group-add",
            str(socket_gid()),
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            deploy_image,
            "--no-api",
            check=False,
            timeout=60,
        )
        assert p.returncode != 0
        assert f"OPEVA_HOST_DATA={data}" in p.stderr, p.stderr
        assert not (data / "jobs").exists() or not any((data / "jobs").iterdir())
        # A wrong OPEVA_HOST_DATA is refused too.
        p = sh(
            *base,
            "-e",
            "OPEVA_HOST_DATA=/srv/not-there",
            "--network",
            "none",
            deploy_image,
            "--no-api",
            check=False,
            timeout=60,
        )
        assert p.returncode != 0 and "OPEVA_HOST_DATA=/srv/not-there" in p.stderr, p.stderr
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


def test_compose_files_validate():
    compose = shutil.which("docker-compose")
    if compose is None:
        sh("bash", str(ROOT / "scripts" / "ensure-compose.sh"), timeout=300)
        compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed (Debian package docker-compose)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPEVA_", "DOCKER_GID", "MLFLOW_"))}
    for file in ("docker-compose.yml", "docker-compose.split.yml"):
        args = [compose, "--env-file", str(ROOT / ".env.example"), "-f", str(ROOT / file)]
        ok = sh(*args, "config", check=False, cwd=ROOT, env={**env, "OPEVA_API_TOKEN": "t"})
        assert ok.returncode == 0, f"{file}: {ok.stderr}"
        cfg = yaml.safe_load(ok.stdout)
        services = cfg["services"]
        assert all(s.get("restart") == "unless-stopped" for s in services.values()), file
        assert cfg["networks"]["opeva_network"]["external"] is True, file
        assert "mlflow-data" in cfg["volumes"], file
        controller = services["opeva" if "opeva" in services else "controller"]
        mounts = {
            (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
            for v in controller["volumes"]
        }
        assert ("/opt/opeva_shared_data", "/opt/opeva_shared_data") in mounts, mounts
        assert ("/var/run/docker.sock", "/var/run/docker.sock") in mounts, mounts
        assert controller["environment"]["OPEVA_HOST_DATA"] == "/opt/opeva_shared_data"
        # The data folder follows OPEVA_HOST_DATA, inside and out.
        moved = sh(
            *args, "config", check=False, cwd=ROOT, env={**env, "OPEVA_API_TOKEN": "t", "OPEVA_HOST_DATA": "/srv/opeva"}
        )
        assert moved.returncode == 0 and "/opt/opeva_shared_data" not in moved.stdout, moved.stdout
        # Without a token compose refuses, and says what to set.
        bad = sh(*args, "config", check=False, cwd=ROOT, env=env)
        assert bad.returncode != 0 and "OPEVA_API_TOKEN" in bad.stderr, f"{file}: {bad.stderr}"
