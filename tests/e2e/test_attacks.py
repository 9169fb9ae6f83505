"""Attacks from a hostile job image and a hostile local user (issue 14), against a real `opeva run` (controller and
API) on the real Docker engine. The image opeva-test/hostile is busybox plus a static renameat2 swapper
(tests/e2e/hostile/swapper.c), built by scripts/build-images.sh."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .harness import ControllerProcess, free_port, job_name, read_status, shell_spec, wait_for, wait_phase, write_spec

HOSTILE = "opeva-test/hostile:1"
SECRET = "hunter2-host-secret"


@pytest.fixture(scope="module", autouse=True)
def _hostile_image(docker_engine) -> None:
    if subprocess.run(["docker", "image", "inspect", HOSTILE], capture_output=True).returncode != 0:
        pytest.fail(f"{HOSTILE} is missing: scripts/build-images.sh builds it")


@pytest.fixture
def server(data: Path) -> Iterator[tuple[ControllerProcess, httpx.Client]]:
    ctl = ControllerProcess(data, port=free_port()).start()
    with httpx.Client(base_url=ctl.url, timeout=10) as client:
        yield ctl, client
    ctl.kill()


def host_secret(tmp_path: Path) -> Path:
    """A folder outside the data folder holding what the attacker wants: secret.json."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "secret.json").write_text(json.dumps({"password": SECRET}))
    return d


def test_a_job_swapping_folders_cannot_make_the_api_serve_a_host_file(data, server, tmp_path):
    """Defect 1: results/result.json -> ../outputs/d/secret.json, while outputs/d is swapped with a link to a host
    folder thousands of times a second. Check-then-open served the host file in about 1 request in 4."""
    ctl, client = server
    host = host_secret(tmp_path)
    name = job_name("swap")
    script = (
        'cd "$OPEVA_JOB_DIR" && mkdir -p outputs/d && echo \'{"ok": 1}\' > outputs/d/secret.json'
        f" && ln -s {host} outputs/l && ln -s ../outputs/d/secret.json results/result.json"
        " && echo swapping && swapper outputs/d outputs/l 90"
    )
    write_spec(data, shell_spec(name, script, image=HOSTILE))
    wait_for(lambda: "swapping" in _log(data, name), 60, what="the swapper to start")
    leaked = served = refused = 0
    deadline = time.monotonic() + 60
    for i in range(3000):
        if time.monotonic() > deadline:
            break
        r = client.get(f"/result/{name}" if i % 2 else f"/jobs/{name}/result")
        leaked += SECRET in r.text
        served += r.status_code == 200
        refused += r.status_code == 409
    assert leaked == 0, f"{leaked} responses carried the host file"
    assert served == 0 and refused > 2000, (served, refused)  # a link is never followed, whichever way it points


def _log(data: Path, name: str) -> str:
    try:
        return (data / "jobs" / name / "logs" / f"{name}.log").read_text()
    except OSError:
        return ""


HARDENING_PROBE = r"""
cd "$OPEVA_JOB_DIR"
grep -E '^(NoNewPrivs|CapEff)' /proc/self/status
mknod outputs/disk b 8 0 && chmod 666 outputs/disk && echo MKNOD-WORKED
cp /bin/busybox outputs/suid && chmod 4755 outputs/suid && echo SETUID-SET
cp outputs/suid results/result.json && chmod 4755 results/result.json
chown 1234 outputs/suid && echo CHOWN-WORKED
echo done
"""


def test_a_job_cannot_leave_a_device_node_or_serve_a_setuid_binary(data, server):
    """Defect 2: as root with Docker's default capabilities a job left a world-writable block device node and a
    setuid-root binary in outputs/ (any local user with access to the folder could become root)."""
    ctl, client = server
    name = job_name("suid")
    write_spec(data, shell_spec(name, HARDENING_PROBE, image=HOSTILE))
    wait_phase(data, name, "Succeeded", "Failed", timeout=60)
    log = _log(data, name)
    assert "done" in log, log
    assert "MKNOD-WORKED" not in log and "CHOWN-WORKED" not in log, log
    assert "NoNewPrivs:\t1" in log, log
    cap_eff = int(next(line for line in log.splitlines() if line.startswith("CapEff")).split()[1], 16)
    assert cap_eff & (1 << 27) == 0 and cap_eff & (1 << 7) == 0 and cap_eff & (1 << 6) == 0, hex(
        cap_eff
    )  # MKNOD, SETUID, SETGID
    outputs = data / "jobs" / name / "outputs"
    assert not any(os.path.exists(p) and not Path(p).is_file() and not Path(p).is_dir() for p in outputs.iterdir())
    r = client.get(f"/jobs/{name}/result")
    assert r.status_code == 409 and "setuid" in r.json()["detail"], r.text[:200]
    inspect = json.loads(
        subprocess.run(
            ["docker", "inspect", read_status(data, name)["containerName"]], capture_output=True, text=True
        ).stdout
        or "[{}]"
    )
    if inspect and inspect[0]:
        host_config = inspect[0]["HostConfig"]
        assert "no-new-privileges" in " ".join(host_config.get("SecurityOpt") or [])
        assert "ALL" in (host_config.get("CapDrop") or [])


def test_links_planted_in_the_data_folder_redirect_nothing(data, tmp_path):
    """Defect 9: a local user with write access to the data folder plants links where the controller writes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"phase": "Succeeded", "secret": "host-json"}))
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    name = job_name("planted")
    job = data / "jobs" / name
    job.mkdir(parents=True)
    (job / "events.jsonl").symlink_to(victim)
    (job / "status.json").symlink_to(host_json)
    (job / "job_info.json").symlink_to(host_json)
    (job / "logs").symlink_to(host_dir)
    (data / ".opeva").mkdir(parents=True, exist_ok=True)
    (data / ".opeva" / "controller.lock").symlink_to(victim)

    ctl = ControllerProcess(data, port=free_port())
    ctl.start()
    if ctl.proc.poll() is not None:  # refused to take a planted lock: say why, harm nothing
        assert "link" in ctl.output(), ctl.output()[-2000:]
        (data / ".opeva" / "controller.lock").unlink()
        ctl = ControllerProcess(data, port=free_port()).start()
    write_spec(data, shell_spec(name, "echo hello from the job; echo more > /tmp/x"))
    wait_phase(data, name, "Succeeded", timeout=60)
    assert victim.read_text() == "precious\n", "nothing written through the links"
    assert list(host_dir.iterdir()) == [], "the job's logs were not mounted from the link's target"
    assert json.loads(host_json.read_text())["secret"] == "host-json"
    with httpx.Client(base_url=ctl.url, timeout=10) as client:
        detail = client.get(f"/jobs/{name}").json()
        assert "host-json" not in json.dumps(detail)
        wait_for(lambda: "hello from the job" in client.get(f"/jobs/{name}/logs").text, 20, what="the job's log")
    assert not (job / "logs").is_symlink() and not (job / "events.jsonl").is_symlink()
    ctl.kill()
