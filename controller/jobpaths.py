"""Where things are inside a job's folder, DATA/jobs/NAME/: one place for every name the controller, the API,
the MLflow mirror and the command line use.

The controller writes the records (status.json, job_info.json, events.jsonl); the job writes the four folders it
gets mounted (logs, progress, results, outputs), so everything under those is untrusted (see jobfiles.py).
"""

from __future__ import annotations

JOBS_DIR = "jobs"
LOGS_DIR = "logs"
JOB_SUBDIRS = ("progress", "results", LOGS_DIR, "outputs")  # each bind-mounted into the job, writable by it
STATUS_FILE = "status.json"
JOB_INFO_FILE = "job_info.json"
EVENTS_FILE = "events.jsonl"
RECORD_FILES = (JOB_INFO_FILE, EVENTS_FILE, STATUS_FILE)  # removed in this order: status last
PROGRESS_FILE = "progress/progress.json"
RESULT_FILE = "results/result.json"


def log_name(name: str, capture: bool = True) -> str:
    """The log file's name in logs/: the controller's capture, or the job's own stdout copy when capture is off."""
    return f"{name}.log" if capture else f"{name}.stdout.log"


def log_file(name: str, capture: bool = True) -> str:
    """The log file relative to the job's folder."""
    return f"{LOGS_DIR}/{log_name(name, capture)}"
