"""`/metrics` against a real `opeva run` and a real Docker engine: after a scripted scenario, the values parsed with
prometheus_client's own parser agree with the status files the controller wrote."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from e2e.harness import (
    ControllerProcess,
    cleanup_containers,
    free_port,
    job_name,
    read_status,
    shell_spec,
    wait_for,
    wait_phase,
    write_spec,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_agree_with_the_status_files(docker_engine, tmp_path: Path):
    data = tmp_path / "data"
    ctl = ControllerProcess(data, "--max-running", "1", port=free_port()).start()
    try:
        ok, bad, sleeper, waiter = (job_name(n) for n in ("m-ok", "m-bad", "m-sleep", "m-wait"))
        write_spec(data, shell_spec(ok, "echo fine"))
        wait_phase(data, ok, "Succeeded", timeout=60)
        write_spec(data, shell_spec(bad, "exit 3", backoffLimit=1, backoff={"initialSeconds": 0.2}))
        wait_phase(data, bad, "Failed", timeout=60)
        write_spec(
            data,
            shell_spec(
                sleeper, "sleep 120", resources={"cpus": 0.25, "memory": "64Mi"}, terminationGracePeriodSeconds=1
            ),
        )
        wait_phase(data, sleeper, "Running", timeout=60)
        write_spec(data, shell_spec(waiter, "sleep 1"))
        wait_phase(data, waiter, "Pending", reason="QueueFull", timeout=30)

        statuses = {n: read_status(data, n) for n in (ok, bad, sleeper, waiter)}
        outcomes = Counter(h["outcome"] for st in statuses.values() for h in st["history"])
        running_attempts = sum(1 for st in statuses.values() if st["phase"] == "Running")

        def settled():
            s = scrape(ctl.url)
            if value(s, "opeva_jobs", phase="Pending", reason="QueueFull") != 1.0:
                return None  # the index is rewritten every few seconds
            if value(s, "opeva_job_cpu_usage_cores", job=sleeper) is None:
                return None  # the second resource sample gives the first CPU figure
            if value(s, "opeva_queue_length", queue="") != 1.0:
                return None
            return s

        s = wait_for(settled, 40, interval=0.5, what="metrics to show the scenario")
        assert value(s, "opeva_jobs", phase="Succeeded", reason="Completed") == 1.0
        assert value(s, "opeva_jobs", phase="Failed", reason=statuses[bad]["reason"]) == 1.0
        assert value(s, "opeva_jobs", phase="Running", reason=statuses[sleeper]["reason"] or "") == 1.0
        assert value(s, "opeva_job_attempts_started_total") == sum(outcomes.values()) + running_attempts
        for outcome, n in outcomes.items():
            assert value(s, "opeva_job_attempts_finished_total", outcome=outcome) == n
        assert outcomes["Failed"] == 2  # backoffLimit 1: two attempts
        assert value(s, "opeva_job_reserved", job=sleeper, resource="cpus") == 0.25
        assert value(s, "opeva_job_reserved", job=sleeper, resource="memory_bytes") == 64 * 1024 * 1024
        assert value(s, "opeva_reserved", resource="cpus") == 0.25
        assert value(s, "opeva_oldest_pending_job_age_seconds") > 0
        assert value(s, "opeva_controller_up") == 1.0 and value(s, "opeva_docker_reachable") == 1.0
        assert 0 <= value(s, "opeva_job_cpu_usage_cores", job=sleeper) < 1
        assert value(s, "opeva_job_memory_usage_bytes", job=sleeper) > 0
        # the controller's own metrics, carried by the heartbeat
        reconciles = sum(v for (n, _), v in s.items() if n == "opeva_controller_reconciles_total")
        assert reconciles >= 4
        assert value(s, "opeva_controller_reconcile_duration_seconds_count") == reconciles
        assert value(s, "opeva_container_operation_duration_seconds_count", operation="create") >= 4
        assert value(s, "opeva_container_operation_duration_seconds_count", operation="start") >= 4
        assert value(s, "opeva_watch_events_total", source="specs") >= 4
        assert value(s, "opeva_watch_events_total", source="engine") >= 4
        assert value(s, "opeva_workqueue_adds_total") >= 4
        assert value(s, "opeva_workqueue_queue_duration_seconds_count") >= 4
        assert value(s, "opeva_workqueue_depth") is not None
        assert value(s, "opeva_mlflow_outbox_operations") == 0.0
        # every series the Grafana dashboard queries is one /metrics exports
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "opeva.json").read_text())
        queried = {
            name
            for panel in dashboard["panels"]
            for t in panel["targets"]
            for name in re.findall(r"opeva_\w+", t["expr"])
        }
        help_lines = httpx.get(f"{ctl.url}/metrics", timeout=10).text
        exported = {n for n, _ in s} | set(
            re.findall(r"^# HELP (opeva_\w+)", help_lines, re.M)
        )  # also series with no sample yet
        assert queried and queried <= exported, queried - exported

        # the controller dies: its own metrics stop, job state stays
        ctl.kill()
        beat = json.loads((data / ".opeva" / "heartbeat.json").read_text())
        beat["time"] = "2000-01-01T00:00:00Z"
        (data / ".opeva" / "heartbeat.json").write_text(json.dumps(beat))
        from api.app import create_app
        from api.server import bound_port, start_in_thread, stop

        server, thread = start_in_thread(create_app(data), "127.0.0.1", 0)
        try:
            time.sleep(0.2)
            s = scrape(f"http://127.0.0.1:{bound_port(server)}")
            assert value(s, "opeva_controller_up") == 0.0
            assert value(s, "opeva_docker_reachable") is None
            assert not any(n.startswith("opeva_controller_reconciles") for n, _ in s)
            assert value(s, "opeva_jobs", phase="Succeeded", reason="Completed") == 1.0
        finally:
            stop(server, thread)
    finally:
        ctl.kill()
        cleanup_containers()
