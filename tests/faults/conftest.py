from __future__ import annotations

import os

import pytest
from e2e.harness import cleanup_containers

from .invariants import REPORT, format_report

LONG = os.environ.get("OPEVA_LONG") == "1"


@pytest.fixture(scope="session", autouse=True)
def _engine(docker_engine):
    yield
    cleanup_containers()


def iterations(short: int, long: int) -> int:
    return long if LONG else short


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.write_sep("=", "fault-injection report")
        terminalreporter.write_line(format_report())
