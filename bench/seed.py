"""Seed a data folder with finished jobs exactly as a controller would have left them (for benchmarks and the
recovery-time test): spec file, status.json with history, and a log. No containers are run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from controller.spec import parse_document
from controller.status import AttemptRecord, JobStatus, utcnow


def seed_finished(
    data: Path, count: int, command: list[str], image: str, labels: dict[str, str], prefix: str = "done"
) -> list[str]:
    now = utcnow()
    instance = data / ".opeva" / "instance-id"
    inst = instance.read_text().strip() if instance.exists() else "seeded"
    names = []
    for i in range(count):
        name = f"{prefix}-{i:05d}"
        doc = {
            "apiVersion": "opeva/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"image": image, "command": command, "network": "none"},
        }
        spec_path = data / "specs" / f"{name}.yaml"
        spec_path.write_text(yaml.safe_dump(doc))
        gen = parse_document(doc).generation
        cname = f"opeva-{inst}-{name}-{gen[:8]}-1"
        st = JobStatus(
            name=name,
            phase="Succeeded",
            reason="Completed",
            observedGeneration=gen,
            attempts=1,
            exitCode=0,
            containerName=cname,
            containerId="0" * 64,
            submittedAt=now,
            startedAt=now,
            finishedAt=now,
            updatedAt=now,
            specFile=spec_path.name,
            labels=dict(labels),
            history=[
                AttemptRecord(
                    attempt=1,
                    generation=gen,
                    containerName=cname,
                    startedAt=now,
                    finishedAt=now,
                    exitCode=0,
                    outcome="Succeeded",
                    reason="Completed",
                )
            ],
        )
        d = data / "jobs" / name
        (d / "logs").mkdir(parents=True, exist_ok=True)
        (d / "status.json").write_text(json.dumps(st.model_dump(mode="json")))
        (d / "logs" / f"{name}.log").write_text("done\n")
        names.append(name)
    os.sync()
    return names
