"""Carry out a recorded decision's actions on the engine and the data folder: create, start, stop, remove, collect.

Each action runs after its intent is on disk, so a crash part-way is finished by the next reconcile; the
deterministic container names make a repeated create a `NameConflict`, which adopts the container made first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from .capacityglue import CapacityGlue
from .containercache import ContainerCache
from .containerspec import Placement, container_request, created_info
from .decide import Action, Collect, Create, Desired, Remove, Start, Stop, fail_attempt_start
from .faults import crash_point
from .hooks import AttemptHooks, call_hook
from .jobsecrets import SecretsFolder
from .logcapture import LogCapture
from .recording import Recorder
from .runtime.base import CreateRejected, ImageMissing, NameConflict, Runtime
from .status import Event, JobStatus, iso, utcnow
from .statuscache import StatusCache
from .store import DELETED_ARCHIVE, DataStore

log = structlog.get_logger("opeva.reconcile")


class Actions:
    def __init__(
        self,
        store: DataStore,
        runtime: Runtime,
        cache: ContainerCache,
        logs: LogCapture,
        statuses: StatusCache,
        recorder: Recorder,
        hooks: AttemptHooks,
        secrets: SecretsFolder,
        placement: Placement,
        artifacts: str,
        archive_retention_days: float | None,
        enqueue_after: Callable[[str, float], None],
        capacity: CapacityGlue | None = None,
        exclusions: Callable[[], tuple[str, ...]] | None = None,
    ):
        """`exclusions`: constraints added to every job's placement (nodes the controller refuses)."""
        self.store = store
        self.runtime = runtime
        self.cache = cache
        self.logs = logs
        self.statuses = statuses
        self.recorder = recorder
        self.hooks = hooks
        self.secrets = secrets
        self.placement = placement
        self.artifacts = artifacts
        self.archive_retention_days = archive_retention_days
        self.enqueue_after = enqueue_after
        self.capacity = capacity
        self.exclusions = exclusions or (lambda: ())
        self._stopping: set[str] = set()
        self._stopping_lock = threading.Lock()

    def perform(self, name: str, desired: Desired, status: JobStatus | None, actions: list[Action]) -> float | None:
        """Do the actions in order; a requeue delay when one of them wants the job looked at again soon.

        `status` is the recorded intent; a stray container of a job with no record is stopped or removed without."""
        requeue: float | None = None
        for action in actions:
            if isinstance(action, Stop):
                self.stop_async(name, action)
            elif isinstance(action, Remove):
                self.remove(name, action.container)
            else:
                assert status is not None  # creating, starting and collecting always act for a recorded status
                if isinstance(action, Create):
                    requeue = self.create(desired, status, action)
                elif isinstance(action, Start):
                    try:
                        self.runtime.start(action.container)
                    except (CreateRejected, ImageMissing) as err:  # Swarm: a node found no image when it started
                        self.start_failed(status, action.container, err)
                        return 0.0
                    self.refresh(action.container)
                elif isinstance(action, Collect):
                    self.collect(status, action.archive)
        return requeue

    def create(self, desired: Desired, status: JobStatus, action: Create) -> float:
        m = desired.manifest
        assert m is not None
        self.store.ensure_job_dirs(m.name)
        self.store.ensure_records(m.name)  # mounted read-only into the container, so they must exist
        self.secrets.ensure()  # hidden from the job: must exist to be covered
        try:
            secret_env = self.secrets.environment(m.spec.secretEnv)  # first: a job that cannot start opens no run
            if m.spec.pull_policy == "Always":
                self.pull(m.name, m.spec.image, action.attempt)
            extra_env = call_hook(self.hooks.before_start, m, status, action.attempt, action.container) or {}
            request = container_request(
                m, action, self.placement, extra_env, status.source, self.exclusions(), secret_env=secret_env
            )
            info = self.runtime.create_and_start(request)
        except NameConflict:
            self.refresh(action.container)  # created by an earlier try: adopt it
            return 0.0
        except (ImageMissing, CreateRejected) as err:
            self.start_failed(status, action.container, err)
            return 0.0
        crash_point("after_create")
        self.cache.update(info)
        self.store.write_job_info(m.name, created_info(m, status, action.attempt, info))
        log.info("container_created", job=m.name, container=info.name, attempt=action.attempt, state=info.state)
        return 0.0

    def pull(self, job: str, image: str, attempt: int) -> None:
        """imagePullPolicy Always: a moved tag is picked up; with no registry in reach the local image is used, and
        the job's events say so."""
        note = self.runtime.pull(image)
        if note is not None:
            event = Event(time=utcnow(), type="Warning", reason="PullFailed", message=note, attempt=attempt)
            self.store.append_events(job, [event])
            log.warning("image_pull_failed", job=job, image=image, message=note)

    def remove(self, job: str, container: str) -> None:
        crash_point("before_remove")
        self.runtime.remove(container)
        self.cache.drop(container)
        self.logs.forget(container)
        log.info("container_removed", job=job, container=container)

    def collect(self, status: JobStatus, deleted: bool = False) -> None:
        """Remove the record; a job deleted through the API is archived whatever the retention setting says."""
        artifacts = "archive" if deleted else self.artifacts
        folder = DELETED_ARCHIVE if deleted else "archive"
        archive = self.store.collect_job(status.name, artifacts, iso(status.finishedAt) or "", folder)
        if deleted:
            self.store.clear_deleted(status.name)
            self.store.prune_archive(self.archive_retention_days)
        self.statuses.drop(status.name)
        log.info(
            "job_collected",
            job=status.name,
            phase=status.phase,
            artifacts=artifacts,
            archive=str(archive) if archive else None,
        )

    def refresh(self, container: str) -> None:
        info = self.runtime.inspect(container)
        if info is None:
            self.cache.drop(container)
        else:
            self.cache.update(info)

    def start_failed(self, status: JobStatus, container: str, err: Exception) -> None:
        """The engine refused the attempt (no image, a bad definition, an entrypoint that does not exist)."""
        reason = err.reason if isinstance(err, CreateRejected) else "ImageNotFound"
        self.recorder.save(status, fail_attempt_start(status, reason, str(err), utcnow()))
        self._remove_unstarted(container)
        if self.capacity is not None:
            self.capacity.release(status.name)

    def _remove_unstarted(self, container: str) -> None:
        info = self.runtime.inspect(container)
        if info is not None and info.state == "created":
            self.runtime.remove(container)
        self.cache.drop(container)

    def stop_async(self, name: str, action: Stop) -> None:
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
                self.refresh(action.container)
            except Exception as err:
                log.warning("stop_failed", job=name, container=action.container, error=str(err))
            finally:
                with self._stopping_lock:
                    self._stopping.discard(action.container)
                self.enqueue_after(name, 0)

        threading.Thread(target=run, name=f"stop-{action.container}", daemon=True).start()
