"""Reconcile one job: observe, decide, record, act. The thin layer around the pure `decide`.

`reconcile(name)` is controller-runtime's `Reconcile(request) -> Result`: the key goes in, "look again in N seconds"
comes out. Intent is written before acting: the new status (say, "attempt 3 is being created as container X") is on
disk before Docker is asked to create X, so a crash between the two is resolved by the next reconcile.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import structlog

from .containercache import ContainerCache
from .decide import (
    LABEL_RUN_ID,
    Collect,
    Create,
    Decision,
    Desired,
    Facts,
    Observed,
    Remove,
    Start,
    Stop,
    decide,
    fail_attempt_start,
    run_key,
)
from .faults import crash_point
from .hooks import AttemptHooks, NoHooks
from .logcapture import LABEL_LOG_CAPTURE, LogCapture
from .runtime.base import (
    LABEL_ATTEMPT,
    LABEL_GENERATION,
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_MANAGED,
    LABEL_RUN,
    ContainerRequest,
    CreateRejected,
    ImageMissing,
    Mount,
    NameConflict,
    Runtime,
)
from .scheduler import LABEL_QUEUE, WAIT_REASONS, Scheduler, Wake, pending_job
from .settings import Settings
from .status import SEED_STATUS, JobStatus, iso, utcnow
from .store import DELETED_ARCHIVE, DataStore

log = structlog.get_logger("opeva.reconcile")

POSITION_REFRESH_DELAY = 1.0  # seconds: waiting jobs whose place moved rewrite their status, coalesced


def host_boot_time() -> datetime | None:
    try:
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return datetime.fromtimestamp(btime, UTC)
    except (OSError, StopIteration, ValueError):
        return None


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: DataStore,
        runtime: Runtime,
        specs,
        cache: ContainerCache,
        logs: LogCapture,
        enqueue_after,
        hooks: AttemptHooks | None = None,
        scheduler: Scheduler | None = None,
    ):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.specs = specs
        self.cache = cache
        self.logs = logs
        self.enqueue_after = enqueue_after
        self.hooks: AttemptHooks = hooks or NoHooks()
        self.scheduler = scheduler
        self.boot_time = host_boot_time()
        self.daemon_started_at: datetime | None = None
        self.outages: tuple[tuple[datetime, datetime], ...] = ()  # spans the engine was away (kept by the loop)
        self.outage_since: datetime | None = None  # an outage going on now
        self.host_data = Path(settings.host_data_dir or store.root)
        self.instance = store.instance_id()
        self._statuses: dict[str, JobStatus] = {}
        self._phases: Counter[str] = Counter()
        self._status_lock = threading.Lock()
        self._stopping: set[str] = set()
        self._stopping_lock = threading.Lock()
        self.index_dirty = threading.Event()

    # ---- recorded state ---------------------------------------------------------------------------------
    def load_statuses(self) -> int:
        loaded = {}
        for name in self.store.recorded_jobs():
            st = self.store.read_status(name)
            if st is not None:
                loaded[name] = st
        with self._status_lock:
            self._statuses = loaded
            self._phases = Counter(st.phase for st in loaded.values())
        self.index_dirty.set()
        return len(loaded)

    def phase_counts(self) -> dict[str, int]:
        """Jobs per phase, kept as statuses change: the heartbeat never walks thousands of records."""
        with self._status_lock:
            return {phase: n for phase, n in self._phases.items() if n}

    def statuses(self) -> dict[str, JobStatus]:
        with self._status_lock:
            return dict(self._statuses)

    def status(self, name: str) -> JobStatus | None:
        with self._status_lock:
            return self._statuses.get(name)

    def _save(self, old: JobStatus | None, decision: Decision) -> None:
        new = decision.status
        if new is None:
            return
        if old is not None:
            new.updatedAt = old.updatedAt
            if new == old and not decision.events:
                return
        new.updatedAt = utcnow()
        if decision.events:
            self.store.ensure_job_dirs(new.name)
            self.store.append_events(new.name, decision.events)
            for e in decision.events:
                log.info(e.reason, job=new.name, attempt=e.attempt, message=e.message, type=e.type)
        if new != old:
            if old is not None and len(new.history) > len(old.history):
                crash_point("before_record")
            self.store.write_status(new)
            with self._status_lock:
                self._statuses[new.name] = new
                self._phases[new.phase] += 1
                if old is not None:
                    self._phases[old.phase] -= 1
            self.index_dirty.set()
            if old is None or (old.phase, old.containerId) != (new.phase, new.containerId):
                self.store.write_job_info(
                    new.name,
                    {
                        "status": SEED_STATUS[new.phase],
                        "phase": new.phase,
                        "reason": new.reason,
                        "exit_code": new.exitCode,
                        "started_at": iso(new.startedAt),
                        "finished_at": iso(new.finishedAt),
                        "submitted_at": iso(new.submittedAt),
                    },
                )
            for record in new.history[len(old.history) if old else 0 :]:
                self._hook(self.hooks.after_finish, new, record)

    def _hook(self, fn, *args):
        """Hooks never block or fail a job."""
        try:
            return fn(*args)
        except Exception:
            log.exception("hook_failed", hook=getattr(fn, "__qualname__", str(fn)))
            return None

    # ---- one reconcile ----------------------------------------------------------------------------------
    def outages_until(self, now: datetime) -> tuple[tuple[datetime, datetime], ...]:
        since = self.outage_since
        return self.outages + ((since, now),) if since is not None else self.outages

    def facts(self) -> Facts:
        now = utcnow()
        return Facts(
            now=now,
            instance=self.instance,
            boot_time=self.boot_time,
            daemon_started_at=self.daemon_started_at,
            outages=self.outages_until(now),
            keep_finished_containers=self.settings.keep_finished_containers,
            ttl_succeeded=self.settings.ttl_succeeded,
            ttl_failed=self.settings.ttl_failed,
        )

    def observe(self, name: str, recorded: JobStatus | None) -> Observed:
        containers = self.cache.for_job(name)
        active = recorded is not None and recorded.phase in ("Pending", "Running")
        current = recorded.containerName if active and recorded.containerId else None
        if current and current not in {c.name for c in containers}:
            # before concluding the attempt's container vanished, ask the engine rather than a cache that may lag
            info = self.runtime.inspect(current)
            if info is not None:
                self.cache.update(info)
                containers = self.cache.for_job(name)
        # an attempt in the history was recorded only once its log was complete: never capture it again
        done = {h.containerName for h in recorded.history} if recorded else set()
        for c in containers:
            if c.name not in done:
                self.logs.ensure(c)
        complete = frozenset(c.name for c in containers if c.exited and (c.name in done or self.logs.is_complete(c)))
        return Observed(
            containers=tuple(containers),
            logs_complete=complete,
            progress_at=_mtime(self.store.progress_path(name)) if active else None,
        )

    def reconcile(self, name: str) -> float | None:
        desired = self.specs.desired(name)
        if not desired.exists and self.store.is_deleted(name):
            desired = dataclasses.replace(desired, deleted=True)
        recorded = self.status(name)
        if recorded is None and not desired.exists and not self.cache.for_job(name):
            return None
        observed = self.observe(name, recorded)
        facts = self.facts()
        decision = decide(desired, observed, recorded, facts)
        if self.scheduler is not None:
            decision, observed = self._admit(desired, observed, recorded, facts, decision)
        self._save(recorded, decision)
        if self.scheduler is not None:
            self._settle_capacity(name, observed, decision)
        requeue = decision.requeue_after
        if decision.actions:
            crash_point("after_intent")
        for action in decision.actions:
            if isinstance(action, Create):
                after = self._create(desired, decision.status, action)
                requeue = after if requeue is None else min(requeue, after)
            elif isinstance(action, Start):
                try:
                    self.runtime.start(action.container)
                except CreateRejected as err:
                    self._start_failed(decision.status, action.container, err)
                    return 0.0
                self._refresh(action.container)
            elif isinstance(action, Stop):
                self._stop_async(name, action)
            elif isinstance(action, Collect):
                self._collect(decision.status, action.archive)
            elif isinstance(action, Remove):
                crash_point("before_remove")
                self.runtime.remove(action.container)
                self.cache.drop(action.container)
                self.logs.forget(action.container)
                log.info("container_removed", job=name, container=action.container)
        return requeue

    # ---- capacity ---------------------------------------------------------------------------------------
    def _admit(
        self, desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts, decision: Decision
    ) -> tuple[Decision, Observed]:
        """A decision that would create a container is taken again with the scheduler's answer."""
        create = next((a for a in decision.actions if isinstance(a, Create)), None)
        if create is None or desired.manifest is None or decision.status is None:
            return decision, observed
        job = pending_job(desired.manifest, decision.status.submittedAt)
        observed = dataclasses.replace(observed, admission=self.scheduler.admit(job, create.container))
        return decide(desired, observed, recorded, facts), observed

    def _settle_capacity(self, name: str, observed: Observed, decision: Decision) -> None:
        """Before acting: an ended attempt gives back its share now, and the jobs that may start are woken."""
        creating = any(isinstance(a, Create) for a in decision.actions)
        live = next((c for c in observed.containers if c.running or c.state == "created"), None)
        waiting = observed.admission is not None and observed.admission.verdict == "Waiting" and not creating
        self._wake(name, self.scheduler.settle(name, live, waiting, creating))

    def _wake(self, name: str, wake: Wake) -> None:
        for other in wake.now:
            if other != name:
                self.enqueue_after(other, 0)
        for other in wake.later:
            if other != name:
                self.enqueue_after(other, POSITION_REFRESH_DELAY)

    def container_ended(self, container: str) -> None:
        """The engine says a container died: what it held is free at once (its job's reconcile confirms it)."""
        if self.scheduler is not None:
            self._wake("", self.scheduler.ended(container))

    def prime_capacity(self) -> None:
        """At start, before any job is looked at: reservations rebuilt from the live containers (so a restart never
        over-commits), and the jobs recorded as waiting back in their places (so order survives a restart)."""
        if self.scheduler is None:
            return
        self.scheduler.rebuild(c for job in self.cache.jobs() for c in self.cache.for_job(job))
        waiting = []
        for name, st in self.statuses().items():
            desired = self.specs.desired(name)
            if st.phase == "Pending" and st.reason in WAIT_REASONS and desired.manifest is not None:
                waiting.append(pending_job(desired.manifest, st.submittedAt))
        self.scheduler.enqueue(waiting)

    # ---- actions ----------------------------------------------------------------------------------------
    def _collect(self, status: JobStatus, deleted: bool = False) -> None:
        artifacts = "archive" if deleted else self.settings.artifacts
        folder = DELETED_ARCHIVE if deleted else "archive"
        archive = self.store.collect_job(status.name, artifacts, iso(status.finishedAt) or "", folder)
        if deleted:
            self.store.clear_deleted(status.name)
            self.store.prune_archive(self.settings.archive_retention_days)
        with self._status_lock:
            if self._statuses.pop(status.name, None) is not None:
                self._phases[status.phase] -= 1
        self.index_dirty.set()
        log.info(
            "job_collected",
            job=status.name,
            phase=status.phase,
            artifacts=artifacts,
            archive=str(archive) if archive else None,
        )

    def _refresh(self, container: str) -> None:
        info = self.runtime.inspect(container)
        if info is None:
            self.cache.drop(container)
        else:
            self.cache.update(info)

    def _create(self, desired: Desired, status: JobStatus, action: Create) -> float:
        m = desired.manifest
        assert m is not None
        self.store.ensure_job_dirs(m.name)
        try:
            extra_env = self._hook(self.hooks.before_start, m, status, action.attempt, action.container) or {}
            info = self.runtime.create_and_start(self.container_request(m, status, action, extra_env))
        except NameConflict:
            self._refresh(action.container)  # created by an earlier try: adopt it
            return 0.0
        except (ImageMissing, CreateRejected) as err:
            self._start_failed(status, action.container, err)
            return 0.0
        crash_point("after_create")
        self.cache.update(info)
        self.store.write_job_info(
            m.name,
            {
                "job_id": m.name,
                "image": m.spec.image,
                "command": m.spec.command,
                "args": m.spec.args,
                "labels": dict(m.metadata.labels),
                "generation": m.generation,
                "run_id": m.spec.runId,
                "attempt": action.attempt,
                "container_name": info.name,
                "container_id": info.id,
                "created_at": iso(info.created_at),
                "spec_file": status.specFile,
                "log_file": f"logs/{m.name}.log" if m.spec.logCapture else f"logs/{m.name}.stdout.log",
            },
        )
        log.info("container_created", job=m.name, container=info.name, attempt=action.attempt, state=info.state)
        return 0.0

    def _start_failed(self, status: JobStatus, container: str, err: Exception) -> None:
        """The engine refused the attempt (no image, a bad definition, an entrypoint that does not exist)."""
        reason = "ImageNotFound" if isinstance(err, ImageMissing) else "CreateFailed"
        self._save(status, fail_attempt_start(status, reason, str(err), utcnow()))
        self._remove_unstarted(container)
        if self.scheduler is not None:
            self._wake(status.name, self.scheduler.release(status.name))

    def _remove_unstarted(self, container: str) -> None:
        info = self.runtime.inspect(container)
        if info is not None and info.state == "created":
            self.runtime.remove(container)
        self.cache.drop(container)

    def container_request(
        self, m, status: JobStatus, action: Create, extra_env: dict[str, str] | None = None
    ) -> ContainerRequest:
        spec = m.spec
        name = m.name
        generation = m.generation
        labels = {
            **m.metadata.labels,
            LABEL_MANAGED: "true",
            LABEL_INSTANCE: self.instance,
            LABEL_JOB: name,
            LABEL_GENERATION: generation,
            LABEL_ATTEMPT: str(action.attempt),
            LABEL_RUN: run_key(generation, spec.runId),
        }
        if spec.runId:
            labels[LABEL_RUN_ID] = spec.runId
        if not spec.logCapture:
            labels[LABEL_LOG_CAPTURE] = "false"
        if spec.queue:
            labels[LABEL_QUEUE] = spec.queue
        job_dir = f"/data/jobs/{name}"
        env = {
            **spec.env,
            **(extra_env or {}),
            "OPEVA_JOB_ID": name,
            "OPEVA_JOB_DIR": job_dir,
            "OPEVA_ATTEMPT": str(action.attempt),
        }
        if spec.configFile:
            env["OPEVA_CONFIG"] = f"/data/{spec.configFile}"
        host_job = self.host_data / "jobs" / name
        mounts = [Mount(str(self.host_data), "/data", True)] + [
            Mount(str(host_job / sub), f"{job_dir}/{sub}", False) for sub in ("progress", "results", "logs", "outputs")
        ]
        return ContainerRequest(
            name=action.container,
            image=spec.image,
            labels=labels,
            env=env,
            mounts=tuple(mounts),
            entrypoint=spec.command,
            command=spec.args,
            working_dir=spec.workingDir,
            network=spec.network or self.settings.default_network,
            cpus=spec.resources.cpus,
            memory=spec.resources.memory_bytes,
            gpu_ids=action.gpu_ids,
            stop_grace=spec.terminationGracePeriodSeconds,
        )

    def _stop_async(self, name: str, action: Stop) -> None:
        """Stops wait out a grace period, so they run beside the workers; one at a time per container."""
        with self._stopping_lock:
            if action.container in self._stopping:
                return
            self._stopping.add(action.container)

        def run() -> None:
            try:
                log.info(
                    "container_stopping", job=name, container=action.container, reason=action.reason, grace=action.grace
                )
                self.runtime.stop(action.container, action.grace)
                self._refresh(action.container)
            except Exception as err:
                log.warning("stop_failed", job=name, container=action.container, error=str(err))
            finally:
                with self._stopping_lock:
                    self._stopping.discard(action.container)
                self.enqueue_after(name, 0)

        threading.Thread(target=run, name=f"stop-{action.container}", daemon=True).start()


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
