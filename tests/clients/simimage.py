"""The stand-in simulator image (simulator/run_experiment.py), built from the local python test image.

It has the real simulator's entry point, base dir and file I/O (see the script). PyYAML is copied in from this
interpreter's site-packages, as the test image has no pip and no registry is reachable.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPOSITORY = "opeva-test/opeva-simulator"
IMAGE = f"{REPOSITORY}:latest"
DOCKERFILE = """FROM opeva-test/python:3.11
COPY yaml /app/yaml
COPY run_experiment.py /app/run_experiment.py
ENV OPEVA_BASE_DIR=/data PYTHONPATH=/app PYTHONUNBUFFERED=1
WORKDIR /app
ENTRYPOINT ["python3", "run_experiment.py"]
LABEL opeva.test=simulator
"""


def build_simulator_image() -> str:
    """Build the image unless one built from the same script exists; returns its reference."""
    script = (HERE / "simulator" / "run_experiment.py").read_bytes()
    digest = hashlib.sha256(script + DOCKERFILE.encode()).hexdigest()[:12]
    found = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "opeva.test.digest"}}', IMAGE],
        capture_output=True,
        text=True,
    )
    if found.returncode == 0 and found.stdout.strip() == digest:
        return IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        shutil.copytree(Path(yaml.__file__).parent, ctx / "yaml", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        shutil.copy(HERE / "simulator" / "run_experiment.py", ctx / "run_experiment.py")
        (ctx / "Dockerfile").write_text(DOCKERFILE + f"LABEL opeva.test.digest={digest}\n")
        subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(ctx)], check=True, capture_output=True)
    return IMAGE
