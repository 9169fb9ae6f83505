"""A run launched from a git commit carries its provenance into MLflow (real repository, controller, Docker, MLflow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from e2e.harness import ControllerProcess, job_name, read_status, shell_spec, wait_phase
from gitops.gitserver import Repo
from tracking_support import EXPERIMENT, UI, final_run

pytestmark = pytest.mark.docker


def test_mlflow_run_has_the_commit_repository_and_branch(tmp_path: Path, data: Path, mlflow):
    repo = Repo(tmp_path / "git")
    name = job_name("git-mlflow")
    repo.write(f"specs/{name}.yaml", shell_spec(name, "echo from git"))
    commit = repo.commit("a job")
    env = {"OPEVA_MLFLOW_RETRY_MAX_SECONDS": "1", "OPEVA_MLFLOW_EXPERIMENT": EXPERIMENT, "OPEVA_MLFLOW_UI": UI}
    ControllerProcess(
        data, "--mlflow-uri", mlflow.uri, "--git", repo.url, "--git-path", "specs", "--git-period", "1", env=env
    ).start()
    wait_phase(data, name, "Succeeded", timeout=60)
    [run] = final_run(mlflow, name)
    digest = hashlib.sha256((repo.work / "specs" / f"{name}.yaml").read_bytes()).hexdigest()
    tags = run["tags"]
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.git.repoURL"] == repo.url
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["opeva.source.path"] == f"specs/{name}.yaml" and tags["opeva.source.digest"] == digest
    assert read_status(data, name)["history"][-1]["source"]["commit"] == commit
