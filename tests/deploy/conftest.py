"""Deployment tests: the image built from a locally made base, run against the host's Docker engine.

The build (base image by debootstrap, then `docker build --network host`) happens once per session; the image's
size is reported in the terminal summary (and on stderr as soon as it is known).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .helpers import BASE_IMAGE, IMAGE, REPORT, ROOT, SIZE_TARGET_MB, TEST_LABEL, build_context, image_size, sh


@pytest.fixture(scope="session")
def deploy_image(docker_engine) -> str:
    """Build the base (idempotent) and the image once per session; record the sizes for the summary."""
    t0 = time.monotonic()
    sh("bash", str(ROOT / "scripts" / "build-base-image.sh"), BASE_IMAGE, timeout=600)
    t1 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opeva-build-") as ctx:
        build_context(Path(ctx))
        proc = subprocess.run(
            [
                "docker",
                "build",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                "--label",
                f"{TEST_LABEL}=build",
                "-t",
                IMAGE,
                ctx,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    t2 = time.monotonic()
    if proc.returncode != 0:
        pytest.fail(f"docker build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    size, base = image_size(IMAGE), image_size(BASE_IMAGE)
    REPORT.update(
        {
            "image": f"{IMAGE}: {size / 1e6:.0f} MB; base {BASE_IMAGE}: {base / 1e6:.0f} MB; "
            f"over the base: {(size - base) / 1e6:.0f} MB (target < {SIZE_TARGET_MB} MB)",
            "build": f"base image {t1 - t0:.0f} s (0 when it existed), docker build {t2 - t1:.0f} s",
        }
    )
    print(f"\n[deploy] {REPORT['image']}\n[deploy] {REPORT['build']}", file=sys.__stderr__, flush=True)
    return IMAGE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if REPORT:
        terminalreporter.section("deployment image")
        for line in REPORT.values():
            terminalreporter.write_line(line)
