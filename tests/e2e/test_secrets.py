"""Secrets and what a job can see (issue 14, defect 11), against a real `opeva run` (controller and API) and the real
Docker engine: a job gets the secrets its spec names, in its environment only; no job sees the secrets folder, the
specs (which name other jobs' secrets and settings) or the controller's state; the value appears in no status, log,
event, record or API answer; a secret that cannot be used fails the job with a reason."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .harness import ControllerProcess, free_port, job_name, read_log, shell_spec, wait_phase, write_spec

VALUE = "opeva-secret-7c1e5b20d94f"  # the job checks it by its hash: not even the probe holds it
DIGEST = hashlib.sha256(VALUE.encode()).hexdigest()

PROBE = r"""
echo "token:${API_TOKEN:+set}"
[ "$(printf %%s "$API_TOKEN" | sha256sum | cut -c1-64)" = "%s" ] && echo TOKEN-MATCHES
for d in /data/secrets /data/specs /data/.opeva; do echo "listing $d: [$(ls -A "$d" 2>&1 | tr '\n' ' ')]"; done
cat /data/secrets/api-token >/dev/null 2>&1 && echo READ-THE-SECRET
touch /data/.opeva/planted 2>/dev/null && echo WROTE-THE-STATE
grep -rl "secret""Env" /data 2>/dev/null | sed 's/^/names-it: /'
ls /data/configs >/dev/null && echo SEES-CONFIGS
echo probe-done
"""


@pytest.fixture
def server(data: Path) -> Iterator[tuple[ControllerProcess, httpx.Client]]:
    secrets = data / "secrets"
    secrets.mkdir(mode=0o700)
    secrets.chmod(0o700)
    (secrets / "api-token").write_text(VALUE + "\n")
    (secrets / "link").symlink_to(secrets / "api-token")
    (data / "configs").mkdir()
    (data / "configs" / "ppo.yaml").write_text("algorithm: {name: PPO}\n")
    ctl = ControllerProcess(data, port=free_port()).start()
    with httpx.Client(base_url=ctl.url, timeout=10) as client:
        yield ctl, client
    ctl.kill()


def test_a_job_gets_its_secret_and_no_job_sees_secrets_specs_or_state(data, server):
    ctl, client = server
    owner, other, shown = job_name("sec-owner"), job_name("sec-other"), job_name("sec-shown")
    write_spec(data, shell_spec(owner, PROBE % DIGEST, secretEnv={"API_TOKEN": "api-token"}, env={"PLAIN": "1"}))
    write_spec(data, shell_spec(other, PROBE % DIGEST, sharedData="ReadWrite"))  # even with the folder writable
    write_spec(data, shell_spec(shown, PROBE % DIGEST, mountSpecs=True))
    for name in (owner, other, shown):
        wait_phase(data, name, "Succeeded", "Failed", timeout=90)
    logs = {name: read_log(data, name) for name in (owner, other, shown)}
    for name, log in logs.items():
        assert "probe-done" in log and "SEES-CONFIGS" in log, (name, log)
        assert "listing /data/secrets: []" in log and "listing /data/.opeva: []" in log, (name, log)
        assert "READ-THE-SECRET" not in log and "WROTE-THE-STATE" not in log, (name, log)
    assert "TOKEN-MATCHES" in logs[owner] and "token:set" in logs[owner], logs[owner]
    assert "token:set" not in logs[other] and "token:set" not in logs[shown]
    assert "listing /data/specs: []" in logs[owner] and "listing /data/specs: []" in logs[other]
    assert "names-it" not in logs[other], logs[other]  # no spec naming the secret is in its view
    assert f"{owner}.yaml" in logs[shown] and "names-it: /data/specs/" in logs[shown], logs[shown]
    assert not (data / ".opeva" / "empty" / "planted").exists() and not list((data / ".opeva" / "empty").iterdir())
    _nowhere_but_the_secrets_folder(data, ctl, client, owner)


def test_a_secret_that_cannot_be_used_fails_the_job_with_a_reason(data, server):
    ctl, client = server
    cases = {
        job_name("sec-missing"): ("absent", "there is no file"),
        job_name("sec-link"): ("link", "symbolic link"),
    }
    for name, (file, _) in cases.items():
        write_spec(data, shell_spec(name, "echo started", secretEnv={"TOKEN": file}))
    for name, (_, why) in cases.items():
        st = wait_phase(data, name, "Failed", timeout=60)
        assert st["reason"] == "SecretUnavailable" and why in st["message"] and "TOKEN" in st["message"], st
        assert "started" not in read_log(data, name)
        detail = client.get(f"/jobs/{name}").json()
        assert detail["status"]["reason"] == "SecretUnavailable", detail
    assert ctl.proc.poll() is None and client.get("/health").status_code == 200  # no crash
    (data / "secrets" / "absent").write_text("now here")
    name = next(iter(cases))
    assert client.post(f"/jobs/{name}/rerun").status_code < 300
    wait_phase(data, name, "Succeeded", timeout=60)


def _nowhere_but_the_secrets_folder(data: Path, ctl: ControllerProcess, client: httpx.Client, name: str) -> None:
    """The value is in no file of the data folder but its own, no controller output, no API or CLI answer."""
    leaked = [
        str(p)
        for p in data.rglob("*")
        if p.is_file() and not p.is_symlink() and data / "secrets" not in p.parents and VALUE.encode() in p.read_bytes()
    ]
    assert leaked == []
    assert VALUE not in ctl.output()
    answers = [
        client.get(path)
        for path in (
            "/jobs",
            f"/jobs/{name}",
            f"/jobs/{name}/events",
            f"/jobs/{name}/logs",
            f"/status/{name}",
            f"/job-info/{name}",
            f"/logs/{name}",
            f"/logs-chunk/{name}",
            "/experiment-config/../secrets/api-token",
            "/experiment-config/%2e%2e/secrets/api-token",
            "/ui",
        )
    ]
    answers.append(client.post("/run-simulation", json={"config_path": "/data/secrets/api-token"}))
    answers.append(client.post("/run-simulation", json={"config_path": "../secrets/api-token"}))
    answers.append(
        client.post("/simulation-data/file", json={"job_id": name, "relative_path": "../../../secrets/api-token"})
    )
    for r in answers:
        assert VALUE not in r.text, (r.request.url, r.status_code)
    assert client.get(f"/jobs/{name}").json()["spec"]["secretEnv"] == {"API_TOKEN": "api-token"}
    env = {**os.environ, "OPEVA_SERVER": ctl.url}
    for args in (["get", name, "-o", "yaml"], ["get", name, "-o", "json"], ["describe", name]):
        out = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and VALUE not in out.stdout + out.stderr, (args, out.stderr[-500:])
        assert "api-token" in out.stdout, (args, out.stdout[-500:])
