"""A stand-in for the OPEVA simulator (Algorithms/run_experiment.py): the same arguments, environment and file I/O,
in the same order, without the training. Written for these tests from the description in real-clients.md.

Test switches in the config's `test:` section: `crash_before_log` (die before opening the own log),
`tamper_records` (try to rewrite status.json and events.jsonl), `wait_for_go` (write env.json, then wait for a
`go` file the test writes after making the job's MLflow calls with that environment).
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

import yaml


def now():
    return datetime.now(UTC).isoformat()


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--job_id", "--job-id", dest="job_id", required=True)
    parser.add_argument("--base-dir", default=os.environ.get("OPEVA_BASE_DIR", "/data"))
    args = parser.parse_args()
    base, job_id = args.base_dir, args.job_id
    job_dir = os.path.join(base, "jobs", job_id)
    # _prepare_paths(): first, outside any try, as the real simulator does
    for sub in ("", "bundle", "bundle/onnx_models", "checkpoints", "logs", "progress", "results"):
        os.makedirs(os.path.join(job_dir, sub), exist_ok=True)
    os.makedirs(os.path.join(base, "mlflow", "mlruns"), exist_ok=True)
    print(f"simulator starting job {job_id} with {args.config}", flush=True)

    with open(args.config) as f:
        config = yaml.safe_load(f)
    test = config.get("test") or {}
    if test.get("crash_before_log"):
        print("fatal: crashing before the log file is open", file=sys.stderr, flush=True)
        sys.exit(3)

    log = open(os.path.join(job_dir, "logs", f"{job_id}.log"), "a")

    def info(msg):
        log.write(f"{now()} | INFO | {msg}\n")
        log.flush()

    info(f"job {job_id} started; OPEVA_JOB_NAME={os.environ.get('OPEVA_JOB_NAME')}")
    meta = config.get("metadata") or {}
    info_path = os.path.join(job_dir, "job_info.json")
    try:
        with open(info_path) as f:
            current = json.load(f)
    except (OSError, ValueError):
        current = {}
    current.update(
        {
            "job_id": job_id,
            "job_dir": job_dir,
            "bundle_dir": os.path.join(job_dir, "bundle"),
            "run_name": os.environ.get("OPEVA_JOB_NAME") or meta.get("run_name"),
            "mlflow_enabled": bool(os.environ.get("MLFLOW_TRACKING_URI")),
            "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI"),
            "mlflow_ui_base_url": os.environ.get("MLFLOW_UI_BASE_URL"),
        }
    )
    with open(info_path, "w") as f:
        json.dump(current, f)
    result_path = os.path.join(job_dir, "results", "result.json")
    with open(result_path, "w") as f:
        json.dump({"status": "pending"}, f)

    dataset = (config.get("simulator") or {}).get("dataset_path")
    if dataset:
        with open(dataset) as f:
            schema = json.load(f)
        info(f"dataset {dataset} with {len(schema.get('buildings', []))} buildings")
    with open(os.path.join(job_dir, "config.resolved.yaml"), "w") as f:
        yaml.safe_dump(config, f)

    if test.get("tamper_records"):
        for rec in ("status.json", "events.jsonl"):
            try:
                with open(os.path.join(job_dir, rec), "w") as f:
                    f.write('{"phase": "Succeeded", "garbage": tru')
                info(f"tamper {rec}: written")
            except OSError as err:
                info(f"tamper {rec}: refused ({err.strerror})")

    if test.get("wait_for_go"):
        write_json_atomic(os.path.join(job_dir, "env.json"), dict(os.environ))
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(job_dir, "go")) and time.time() < deadline:
            time.sleep(0.1)

    episodes = int(test.get("episodes", 3))
    for ep in range(1, episodes + 1):
        progress = {
            "episode": ep,
            "episode_current": ep,
            "episode_total": episodes,
            "step": ep * 10,
            "global_step": ep * 10,
            "status": "training",
            "timestamp": now(),
            "progress_pct": round(100.0 * ep / episodes, 1),
        }
        write_json_atomic(os.path.join(job_dir, "progress", "progress.json"), progress)
        with open(os.path.join(job_dir, "checkpoints", f"ckpt-{ep}.bin"), "wb") as f:
            f.write(b"\0" * 16)
        info(f"episode {ep}/{episodes} reward {0.1 * ep:.2f}")
        time.sleep(float(test.get("sleep", 0.2)))

    session = os.path.join(job_dir, "results", "simulation_data", "session-1")
    os.makedirs(session, exist_ok=True)
    with open(os.path.join(session, "exported_kpis.csv"), "w") as f:
        f.write("timestamp,kpi,value\n2022-01-01T00:00:00,cost,0.9\n2022-01-02T00:00:00,cost,0.8\n")
    with open(os.path.join(job_dir, "bundle", "artifact_manifest.json"), "w") as f:
        json.dump({"files": ["onnx_models/agent.onnx"]}, f)
    write_json_atomic(os.path.join(job_dir, "results", "summary.json"), {"episodes": episodes})
    result = {
        "status": "completed",
        "kpi_source": "simulation_data/exported_kpis.csv",
        "simulation_data_dir": session,
        "reward_function": "cost",
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    progress["status"] = "completed"
    progress["progress_pct"] = 100.0
    write_json_atomic(os.path.join(job_dir, "progress", "progress.json"), progress)
    info("job completed")


if __name__ == "__main__":
    main()
