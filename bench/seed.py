"""Seed a data folder with finished jobs exactly as a controller would have left them (for benchmarks and the
recovery-time test): spec file, status record (and its copy) with history, job_info (the controller's record and the
job's copy), and a log. No containers are run.

One job is built through the real models; the rest are that job's files with the name and the generation
substituted, so 100,000 jobs seed in seconds rather than minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from controller.containerspec import phase_info
from controller.spec import generation_hash, parse_document
from controller.status import AttemptRecord, JobStatus, utcnow

TEMPLATE = "seedtemplatename"  # a name that occurs nowhere else in the files


def seed_finished(
    data: Path, count: int, command: list[str], image: str, labels: dict[str, str], prefix: str = "done"
) -> list[str]:
    now = utcnow()
    instance = data / ".opeva" / "instance-id"
    inst = instance.read_text().strip() if instance.exists() else "seeded"
    doc = {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": {"name": TEMPLATE, "labels": dict(labels)},
        "spec": {"image": image, "command": command, "network": "none"},
    }
    m = parse_document(doc)
    spec_text = yaml.safe_dump(doc)
    gen0 = m.generation
    cname0 = f"opeva-{inst}-{TEMPLATE}-{gen0[:8]}-1"
    st = JobStatus(
        name=TEMPLATE,
        phase="Succeeded",
        reason="Completed",
        observedGeneration=gen0,
        attempts=1,
        exitCode=0,
        containerName=cname0,
        containerId="0" * 64,
        submittedAt=now,
        startedAt=now,
        finishedAt=now,
        updatedAt=now,
        specFile=f"{TEMPLATE}.yaml",
        labels=dict(labels),
        history=[
            AttemptRecord(
                attempt=1,
                generation=gen0,
                containerName=cname0,
                startedAt=now,
                finishedAt=now,
                exitCode=0,
                outcome="Succeeded",
                reason="Completed",
            )
        ],
    )
    status_text = json.dumps(st.model_dump(mode="json"), indent=2) + "\n"  # byte for byte as the store writes it
    info_text = json.dumps(phase_info(st))
    records = data / ".opeva" / "status"
    records.mkdir(parents=True, exist_ok=True)
    infos = data / ".opeva" / "jobinfo"
    infos.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"{prefix}-{i:05d}"
        gen = generation_hash(m.model_copy(update={"metadata": m.metadata.model_copy(update={"name": name})}))
        (data / "specs" / f"{name}.yaml").write_text(spec_text.replace(TEMPLATE, name))
        d = data / "jobs" / name
        (d / "logs").mkdir(parents=True, exist_ok=True)
        text = status_text.replace(f"{TEMPLATE}-{gen0[:8]}", f"{name}-{gen[:8]}").replace(gen0, gen)
        text = text.replace(TEMPLATE, name)
        (records / f"{name}.json").write_text(text)  # the authoritative record, and the copy beside the job's files
        (d / "status.json").write_text(text)
        (infos / f"{name}.json").write_text(info_text)  # what the controller writes at each phase change
        (d / "job_info.json").write_text(info_text)
        (d / "logs" / f"{name}.log").write_text("done\n")
        names.append(name)
    os.sync()
    return names
