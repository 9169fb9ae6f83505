"""The running controller: workers on a keyed queue, and the watchers that only say "look again".

Watchers: watchdog on the specs folder (polling when it cannot be watched), the engine's event stream, and a
periodic resync that catches anything missed. Workers take job names off the queue and call the reconciler; a name
is never handled by two workers at once. This module knows nothing of job semantics.
"""

from __future__ import annotations

import os
import threading
import time

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

try:
    from watchdog.observers.inotify import InotifyObserver
except ImportError:  # not Linux: no inotify, so no close events either
    InotifyObserver = None  # type: ignore[misc]

from . import metrics
from .capacityglue import CapacityGlue
from .containercache import ContainerCache
from .hooks import AttemptHooks
from .hostfacts import HostFacts
from .logcapture import LogCapture
from .nodes import NodeWatch
from .reconciler import Reconciler
from .runtime.base import Runtime, RuntimeUnavailable
from .sampler import Sampler
from .scheduler import Scheduler
from .settings import Settings
from .specsource import SpecSource
from .status import Event, utcnow
from .statuscache import StatusCache
from .store import ControllerLock, DataStore, StoreError
from .workqueue import WorkQueue

log = structlog.get_logger("opeva.loop")

HEARTBEAT_SECONDS = 5.0
NODE_POLL_SECONDS = 2.0  # Swarm: how often the nodes are listed (a lost node is noticed this soon after its settle)
LOCAL_NODE_POLL_SECONDS = 30.0  # one engine: its node changes only in its labels
FOLDER_RESCAN_EVERY = 3  # with a working folder watch, every 3rd resync (30 s by default) rescans the folder too
SCAN_BUDGET = 100  # ... but no sooner than 100x the last scan took: a backstop costs at most ~1% of a core
SCAN_DEBOUNCE = 0.02
FULL_RESYNC_EVERY = 30  # every Nth resync enqueues every job, settled or not


class _SpecEvents(FileSystemEventHandler):
    """Every change wakes the scanner; writes and closes also tell `specs` which files are still being written."""

    def __init__(self, wake: threading.Event, specs: SpecSource):
        self.wake = wake
        self.specs = specs

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type != "opened" and event.event_type != "closed_no_write":
            if not event.is_directory:
                dest = os.fsdecode(event.dest_path) if event.dest_path else None
                self.specs.file_event(event.event_type, os.fsdecode(event.src_path), dest)
            metrics.WATCH_EVENTS.labels("specs").inc()
            self.wake.set()


class Controller:
    """Its parts come built (see `wiring.build_controller`); it drives them and tells `host` what it sees of the
    engine."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: DataStore,
        runtime: Runtime,
        queue: WorkQueue,
        cache: ContainerCache,
        specs: SpecSource,
        logs: LogCapture,
        hooks: AttemptHooks,
        scheduler: Scheduler,
        statuses: StatusCache,
        host: HostFacts,
        reconciler: Reconciler,
        capacity: CapacityGlue,
        sampler: Sampler,
        nodes: NodeWatch,
    ):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.queue = queue
        self.cache = cache
        self.specs = specs
        self.logs = logs
        self.hooks = hooks
        self.scheduler = scheduler
        self.statuses = statuses
        self.host = host
        self.reconciler = reconciler
        self.capacity = capacity
        self.sampler = sampler
        self.nodes = nodes
        self._stop = threading.Event()
        self._scan_wake = threading.Event()
        self._resync_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._observer: BaseObserver | None = None
        self._lock: ControllerLock | None = None
        self._unsettled: set[str] = set()  # jobs whose last reconcile asked to look again, or failed
        self.docker_ok = False
        self.resync_count = 0
        self.last_resync_seconds = 0.0
        self._scan_seconds = 0.0  # how long the last rescan of the specs folder took
        self._scanned_at = float("-inf")

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._lock = self.store.acquire_lock()
        n = self.statuses.load()
        self.reconciler.recorder.restore_views(self.statuses.live().values())
        self.specs.prime(self.statuses.spec_stamps())
        self.hooks.on_start(self.statuses)
        log.info(
            "controller_starting",
            data=str(self.store.root),
            specs=str(self.store.specs_dir),
            recorded_jobs=n,
            workers=self.settings.workers,
        )
        self._watch_specs()  # before the first scan, so no file dropped in between goes unseen until a resync
        self._guarded("node_refresh_failed", self.refresh_nodes)  # the capacity and the probe before any job starts
        self.resync(full=True)
        self.capacity.prime(self.statuses.live())
        log.info("capacity", **self.scheduler.capacity.describe())
        for i in range(self.settings.workers):
            self._spawn(self._worker, f"worker-{i}")
        self._spawn(self._scan_loop, "spec-scanner")
        self._spawn(self._resync_loop, "resync")
        self._spawn(self._events_loop, "engine-events")
        self._spawn(self._recorder_loop, "recorder")
        self._spawn(lambda: self.sampler.run(self._stop), "sampler")
        self._spawn(self._nodes_loop, "nodes")

    def stop(self) -> None:
        """Stop the controller, not the jobs: containers keep running and are adopted at the next start."""
        self._stop.set()
        self._scan_wake.set()
        self._resync_wake.set()
        self.queue.shutdown()
        if self._observer is not None:
            self._observer.stop()
        for t in self._threads:
            t.join(timeout=5)
        try:
            self._write_index()
        except StoreError as err:
            log.warning("index_write_failed", error=str(err))
        self.hooks.close()
        if self._lock is not None:
            self._lock.release()
        log.info("controller_stopped")

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- workers ----------------------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()
            if key is None:
                return
            name = str(key)  # the queue holds job names
            self._unsettled.add(name)  # until it settles (set operations are atomic under the GIL)
            result = "error"
            t0 = time.perf_counter()
            try:
                after = self.reconciler.reconcile(name)
                self.queue.forget(name)
                if after is None:
                    result = "success"
                    self._unsettled.discard(name)
                else:
                    result = "requeue"
                    self.queue.add_after(name, after)
            except RuntimeUnavailable as err:
                result = "engine_unavailable"
                # the engine is away: every job would say so; one line from the watcher is enough
                delay = self.queue.add_rate_limited(name)
                (log.warning if self.docker_ok else log.debug)(
                    "reconcile_retry", job=name, error=str(err), retry_in=round(delay, 2)
                )
            except StoreError as err:
                delay = self.queue.add_rate_limited(name)
                if self.queue.failures(name) in (1, 10, 20):
                    log.warning("reconcile_retry", job=name, error=str(err), retry_in=round(delay, 2))
            except Exception:
                delay = self.queue.add_rate_limited(name)
                log.exception("reconcile_failed", job=name, retry_in=round(delay, 2))
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - t0)
                metrics.RECONCILES.labels(result).inc()
                self.queue.done(name)

    # ---- watchers ---------------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Scan the specs folder now (the git source flipped it to a new commit)."""
        self._scan_wake.set()

    def running_jobs(self) -> set[str]:
        return {name for name, st in self.statuses.live().items() if st.phase == "Running"}

    def _watch_specs(self) -> None:
        if self.settings.git_url:
            return  # a symlink flipped by the git source, which asks for a scan itself (watching it would go stale)
        handler = _SpecEvents(self._scan_wake, self.specs)
        if not self.settings.poll_specs:
            try:
                obs = Observer()
                obs.schedule(handler, str(self.store.specs_dir), recursive=True)
                obs.start()
                self._observer = obs
                self.specs.watched(closes_reported=InotifyObserver is not None and isinstance(obs, InotifyObserver))
                return
            except OSError as err:
                log.warning("specs_watch_unavailable", error=str(err), fallback="polling")
        obs = PollingObserver(timeout=self.settings.poll_interval)
        obs.schedule(handler, str(self.store.specs_dir), recursive=True)
        obs.start()
        self._observer = obs
        self.specs.watched(closes_reported=False)
        log.info("specs_polling", interval=self.settings.poll_interval)

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            self._scan_wake.wait()
            if self._stop.is_set():
                return
            # scan at once, then coalesce the rest of a burst of file events into one more scan
            self._scan_wake.clear()
            self._guarded("spec_scan_failed", self.scan_specs)
            time.sleep(SCAN_DEBOUNCE)

    @staticmethod
    def _guarded(event: str, fn, *args) -> None:
        """A watcher thread survives any error in one round; the next round (or resync) tries again."""
        try:
            fn(*args)
        except Exception:
            log.exception(event)

    def scan_specs(self) -> None:
        result = self.specs.scan()
        for name in sorted(result.changed):
            self.queue.add(name)
        for name in sorted(result.rewritten_same):
            log.info("spec_unchanged", job=name, message="file saved with identical content; nothing to do")
            self._record_unchanged(name)
        if result.recheck_in is not None:
            threading.Timer(result.recheck_in, self._scan_wake.set).start()

    def _record_unchanged(self, name: str) -> None:
        try:
            if self.statuses.has(name):
                self.store.append_events(
                    name,
                    [
                        Event(
                            time=utcnow(),
                            reason="SpecUnchanged",
                            message="spec saved with identical content; nothing to do",
                        )
                    ],
                )
        except StoreError as err:
            log.warning("event_write_failed", job=name, error=str(err))

    def _resync_loop(self) -> None:
        while not self._stop.is_set():
            self._resync_wake.wait(self.settings.resync_seconds)
            if self._stop.is_set():
                return
            self._resync_wake.clear()
            self._guarded("resync_failed", self.resync, self.resync_count % FULL_RESYNC_EVERY == 0)

    def resync(self, full: bool = False) -> None:
        """Re-read the folder and the engine, and enqueue what may need a look: jobs whose spec changed (the scan
        does that), jobs with containers, jobs not settled yet; every job when `full`.

        A settled job with no container and an unchanged spec cannot decide differently until one of those changes
        (timers are requeues on the queue), so a resync over thousands of finished jobs touches none of them; the
        periodic full resync is the safety net.
        """
        t0 = time.monotonic()
        self.resync_count += 1
        backstop = (
            self.resync_count % FOLDER_RESCAN_EVERY == 0 and t0 - self._scanned_at >= SCAN_BUDGET * self._scan_seconds
        )
        if full or backstop or isinstance(self._observer, PollingObserver):
            self.scan_specs()  # the watcher sees changes at once; this catches any event it lost
            self._scanned_at = time.monotonic()
            self._scan_seconds = self._scanned_at - t0
        if full or self.host.daemon_started_at is None:
            self.host.daemon_seen(self.runtime.daemon_started_at())
        try:
            listed = self.runtime.list()
            self.cache.replace_all(listed, t0)
            self._engine_up()
        except RuntimeUnavailable as err:
            self._engine_down(str(err))
        if full:
            # settled jobs whose records and spec files are as they were cannot decide anything new
            quiet = self.statuses.quiet(self.specs.stamp, exclude=self.store.deleted_jobs())
            names = (self.specs.names() | self.statuses.names()) - quiet | self.cache.jobs()
        else:
            names = self.cache.jobs() | set(self._unsettled)
        for name in sorted(names):
            self.queue.add(name)
        self.last_resync_seconds = time.monotonic() - t0
        log.debug("resync", queued=len(names), seconds=round(self.last_resync_seconds, 3), full=full)

    def refresh_nodes(self) -> None:
        """List the nodes: a changed cluster resizes the capacity, and jobs on a node just lost are looked at now."""
        lost, capacity = self.nodes.refresh()
        if capacity is not None:
            self.capacity.resize(capacity)
        for job in sorted(self.nodes.jobs_on(lost, self.cache.all())):
            self.queue.add(job)

    def _nodes_loop(self) -> None:
        interval = NODE_POLL_SECONDS if self.nodes.kind == "swarm" else LOCAL_NODE_POLL_SECONDS
        while not self._stop.wait(interval):
            self._guarded("node_refresh_failed", self.refresh_nodes)

    def _engine_down(self, error: str) -> None:
        began = self.host.engine_down()
        if self.docker_ok or began:
            log.warning("docker_unreachable", error=error)
        self.docker_ok = False

    def _engine_up(self) -> None:
        span = self.host.engine_up()
        if span is not None:
            log.info("docker_reachable", outage_seconds=round((span[1] - span[0]).total_seconds(), 1))
            self.host.daemon_seen(self.runtime.daemon_started_at())  # a new daemon, perhaps
            self.logs.retry_now()
        self.docker_ok = True

    def _events_loop(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                stream = self.runtime.events()
                if not self.docker_ok:
                    self._engine_up()
                    self._resync_wake.set()  # pick up all that was missed while the engine was away
                delay = 1.0
                for ev in stream:
                    if self._stop.is_set():
                        return
                    metrics.WATCH_EVENTS.labels("engine").inc()
                    try:
                        self._on_engine_event(ev)
                    except RuntimeUnavailable:
                        raise
                    except Exception:  # one bad event must not look like an engine outage
                        log.exception("engine_event_failed", job=ev.job, action=ev.action)
                    if ev.job:
                        self.queue.add(ev.job)
                self._engine_down("event stream ended")
            except Exception as err:
                self._engine_down(str(err))
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _on_engine_event(self, ev) -> None:
        """Refresh the cache for one container event; the job is enqueued by the caller whatever happens here."""
        if ev.action == "die":  # its share is free now: the next job need not wait for the inspect
            self.capacity.container_ended(ev.container)
        if ev.action == "destroy":
            self.cache.drop(ev.container)
        elif ev.action == "start" and (known := self.cache.get(ev.container)) and known.running:
            pass  # our own create already recorded it running: spare the engine an inspect
        elif ev.action != "oom":  # an oom is followed by its die
            info = self.runtime.inspect(ev.container)
            if info is not None:
                self.cache.update(info)

    def _recorder_loop(self) -> None:
        """Heartbeat for /health, and the derived job_track.json index, rewritten at most every 5 s."""
        last_error, last_logged = "", 0.0
        while not self._stop.is_set():
            try:
                self.store.write_heartbeat(
                    {
                        "docker": self.docker_ok,
                        "phases": self.statuses.phase_counts(),
                        "queue": len(self.queue),
                        "capacity": self.scheduler.summary(),
                        "runtime": self.nodes.kind,
                        "nodes": self.nodes.rows(self.cache.all()),
                        **metrics.heartbeat_fields(self.scheduler, self.sampler.latest),
                    }
                )
                if self.statuses.index_dirty.is_set():  # after the heartbeat: 100,000 rows take a moment
                    self._write_index()
            except StoreError as err:
                if str(err) != last_error or time.monotonic() - last_logged > 60:
                    log.warning("record_write_failed", error=str(err))
                    last_error, last_logged = str(err), time.monotonic()
            except Exception:
                log.exception("recorder_failed")
            self._stop.wait(HEARTBEAT_SECONDS)

    def _write_index(self) -> None:
        self.statuses.index_dirty.clear()
        try:
            self.statuses.write_indexes()
        except StoreError:
            self.statuses.index_dirty.set()
            raise
