"""Pure translations between the controller's records and MLflow's vocabulary: statuses, metrics, params, tags.

No I/O here, so every rule is unit-tested with tables of cases.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..spec import JobManifest
from ..status import AttemptRecord

# ---- run status -------------------------------------------------------------------------------------------------
# Stopped attempts are KILLED, except a stop the job earned by running out of time: that is its failure.
FAILED_STOP_REASONS = frozenset({"DeadlineExceeded", "ProgressStalled"})


def run_status(outcome: str, reason: str | None) -> str:
    """MLflow's terminal status for an attempt's outcome (AttemptRecord.outcome and reason)."""
    if outcome == "Succeeded":
        return "FINISHED"
    if outcome in ("Failed", "Ignored"):
        return "FAILED"
    if outcome == "Stopped" and reason in FAILED_STOP_REASONS:
        return "FAILED"
    return "KILLED"  # Stopped (suspended, deleted, superseded, by a user) and Interrupted


def record_status(record: AttemptRecord) -> str:
    return run_status(record.outcome, record.reason)


# ---- keys -------------------------------------------------------------------------------------------------------
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


def safe_key(key: str) -> str:
    """A metric, param or tag key MLflow accepts: its characters, and a path that normalizes to itself.

    MLflow refuses a whole request for one bad key, so a label such as `owner@lab` becomes `owner_lab` rather than
    costing the run.
    """
    parts = [p for p in _BAD_KEY_CHARS.sub("_", key).split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:250] or "_"


# ---- metrics ----------------------------------------------------------------------------------------------------
def metric_key(path: list[str]) -> str:
    """`["train", "loss"]` -> `train/loss` (MLflow groups charts by the part before the slash)."""
    return safe_key("/".join(str(p) for p in path))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def numeric_leaves(doc: Any, prefix: list[str] | None = None, limit: int = 1000) -> dict[str, float]:
    """Every finite number in nested mappings, keyed by its path; lists, strings and booleans are skipped."""
    out: dict[str, float] = {}
    stack: list[tuple[list[str], Any]] = [(prefix or [], doc)]
    while stack and len(out) < limit:
        path, value = stack.pop()
        if isinstance(value, dict):
            for k, v in reversed(list(value.items())):
                stack.append(([*path, str(k)], v))
        elif path and (n := _number(value)) is not None:
            out[metric_key(path)] = n
    return out


def progress_values(doc: Any) -> tuple[dict[str, float], int | None]:
    """The metrics mirrored from progress.json: `percent` and everything under `metrics`; and its `step`."""
    if not isinstance(doc, dict):
        return {}, None
    values: dict[str, float] = {}
    if (pct := _number(doc.get("percent"))) is not None:
        values["percent"] = pct
    values.update(numeric_leaves(doc.get("metrics")) if isinstance(doc.get("metrics"), dict) else {})
    step = doc.get("step")
    step = step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None
    return values, step


def result_values(doc: Any) -> dict[str, float]:
    """Every number of result.json, nested keys joined with '/'."""
    return numeric_leaves(doc) if isinstance(doc, dict) else {}


def metric_list(values: dict[str, float], step: int, timestamp_ms: int) -> list[dict[str, Any]]:
    return [{"key": k, "value": v, "timestamp": timestamp_ms, "step": step} for k, v in sorted(values.items())]


def system_metrics(sample: dict[str, Any], machine_cpus: int) -> dict[str, float]:
    """A resource sample as MLflow's system metric keys (CPU as a share of the machine, as MLflow's own)."""
    out: dict[str, float] = {}
    cpu, memory = sample.get("cpu"), sample.get("memory")
    if isinstance(cpu, int | float):
        out["system/cpu_utilization_percentage"] = round(100.0 * cpu / machine_cpus, 2)
    if isinstance(memory, int | float):
        out["system/system_memory_usage_megabytes"] = round(memory / 2**20, 2)
    if isinstance(sample.get("gpu"), int | float):
        out["system/gpu_utilization_percentage"] = float(sample["gpu"])
    if isinstance(sample.get("gpuMemory"), int | float):
        out["system/gpu_memory_usage_megabytes"] = round(sample["gpuMemory"] / 2**20, 2)
    return out


# ---- params and tags --------------------------------------------------------------------------------------------
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW|PASSWD|KEY|CREDENTIAL|AUTH|PRIVATE)", re.IGNORECASE)
MASK = "***"


def spec_params(m: JobManifest) -> dict[str, str]:
    """The spec's env (values of secret-looking names masked) and its command line, as MLflow params."""
    spec = m.spec
    params = {f"env.{k}": (MASK if SECRET_NAME.search(k) else v) for k, v in sorted(spec.env.items())}
    if spec.args is not None:
        params["args"] = json.dumps(spec.args)
    if spec.command is not None:
        params["command"] = json.dumps(spec.command)
    if spec.configFile:
        params["configFile"] = spec.configFile
    return params


def experiment_name(m: JobManifest, default: str) -> str:
    """spec.mlflow.experiment, else the label `experiment`, else the controller's default."""
    if m.spec.mlflow is not None and m.spec.mlflow.experiment:
        return m.spec.mlflow.experiment
    return m.metadata.labels.get("experiment") or default


def run_name(m: JobManifest, attempt: int) -> str:
    if m.spec.mlflow is not None and m.spec.mlflow.runName:
        return m.spec.mlflow.runName
    return f"{m.name}-a{attempt}"


def enabled(m: JobManifest) -> bool:
    return m.spec.mlflow is None or m.spec.mlflow.enabled


def source_tags(source: dict[str, str]) -> dict[str, str]:
    """MLflow's own git tags and ours for a run's provenance (no credentials: the URL is stored without them)."""
    return {
        "mlflow.source.git.commit": source.get("commit", ""),
        "mlflow.source.git.repoURL": source.get("repoURL", ""),
        "mlflow.source.git.branch": source.get("ref", ""),
        "opeva.git.commit": source.get("commit", ""),
        "opeva.source.path": source.get("path", ""),
        "opeva.source.digest": source.get("digest", ""),
    }
