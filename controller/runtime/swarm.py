"""Docker Swarm behind the `Runtime` interface: one attempt is one `replicated-job` service with one completion.

The controller talks to a manager only. An attempt's "container" is its service (same deterministic name, same
labels, on the service and on its container spec); what the container did is read from the service's task:

    task state                              ContainerInfo.state
    new .. starting (placed or not)         created   (pending with "no suitable node": `waiting` says why)
    rejected, or failed before it ran       created   (`start` raises CreateRejected with Swarm's words)
    running                                 running
    complete / failed / shutdown            exited    (exit code of the task's container)
    orphaned (its node was removed)         dead

Swarm keeps no stopped task: scaling a job to 0 completions stops its task (SIGTERM, the service's stop grace
period, SIGKILL) and then deletes the task with its container and logs. So `stop` watches the task to its end and
writes what it saw (exit code, times) into the service's labels, where it stays until `remove`; a controller that
crashed mid-stop finds the service at 0 completions without them and reads the attempt as killed (137).
Removing a job service whose task runs leaves the task running on its node (seen with 20.10): `remove` scales it to
0 first. Retries stay ours (restart condition `none`). Swarm has no per-task stats through a manager: `stats` is
None. Its event stream carries no task events, so `events` polls the tasks and reports what changed.
"""

from __future__ import annotations

import builtins
import hashlib
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docker import errors as derr
from docker.types import ContainerSpec, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate
from docker.types import Mount as DockerMount

from .. import metrics
from .base import (
    LABEL_JOB,
    ContainerInfo,
    ContainerRequest,
    CreateRejected,
    EngineEvent,
    ImageMissing,
    NameConflict,
    NodeInfo,
    RuntimeUnavailable,
    parse_engine_time,
    timestamp_ns,
)
from .client import EngineClient
from .swarmnodes import SwarmDataProbe, swarm_nodes

GPU_KIND = "NVIDIA-GPU"  # node-generic-resources kind of GPUs (daemon.json), as NVIDIA's docs name it
LABEL_CONTAINER = "opeva.container"  # the attempt's name: a service name is a DNS label of at most 63 characters
LABEL_STOPPED = "opeva.swarm.stoppedAt"  # the stop was asked for (scaled to 0 completions)
LABEL_EXIT = "opeva.swarm.exitCode"  # what `stop` saw of the task's end
LABEL_STARTED = "opeva.swarm.startedAt"
LABEL_FINISHED = "opeva.swarm.finishedAt"
LABEL_GPUS = "opeva.gpus"  # the GPU shares the scheduler gave the attempt, so a restart reserves them again

ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
LOG_QUIET_FIRST, LOG_QUIET_MAX = 0.1, 2.0  # seconds without output before asking whether a task has ended
FAST_POLL, FAST_WINDOW = 0.2, 10.0  # after a create, tasks are looked at every FAST_POLL s for FAST_WINDOW s
KILLED = 137  # exit code of an attempt stopped while we did not watch its end
_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
_END = object()


def service_name(container: str) -> str:
    """The service name of an attempt: its container name when Swarm accepts it, else a shortened one with a hash
    of the whole (deterministic, so a second create of one attempt still conflicts)."""
    if len(container) <= 63 and _SERVICE_NAME.match(container):
        return container
    digest = hashlib.sha256(container.encode()).hexdigest()[:12]
    head = re.sub(r"[^A-Za-z0-9-]", "-", container)[:50].rstrip("-_")
    return f"{head}-{digest}"


def waiting_reason(message: str, req_cpus: float | None, req_memory: int | None, nodes: list[dict]) -> str:
    """Our reason for Swarm's "no suitable node (...)": constraints -> Unschedulable; resources -> the one the
    request asks more of than a node has (Swarm's message does not say which)."""
    if "insufficient resources" not in message:
        return "Unschedulable"
    totals = [(n.get("Description") or {}).get("Resources") or {} for n in nodes]
    cpus = [t.get("NanoCPUs", 0) / 1e9 for t in totals]
    memory = [t.get("MemoryBytes", 0) for t in totals]
    if req_memory and (not memory or req_memory > max(memory)):
        return "InsufficientMemory"
    if req_cpus and (not cpus or req_cpus > max(cpus)):
        return "InsufficientCPU"
    return "InsufficientMemory" if req_memory and not req_cpus else "InsufficientCPU"


class SwarmRuntime(EngineClient):
    """Swarm through one manager's API. Calls time out, and engine errors become our error types."""

    what = "Swarm manager"

    def __init__(
        self,
        base_url: str | None = None,
        timeout: int = 30,
        instance: str | None = None,
        poll: float = 0.5,
        gpu_kind: str = GPU_KIND,
        version: str | None = None,
    ):
        super().__init__(base_url, timeout, instance, version)
        self._raw: Any = self._api  # the SDK's request helpers, for what it has no method for (job updates, logs)
        self.gpu_kind = gpu_kind  # the generic-resource kind nodes advertise their GPUs as
        self.instance = instance or "local"
        self.poll = poll  # seconds between looks at tasks (events, the end of a log stream, a stop)
        self._started: dict[str, datetime] = {}  # task id -> when it was first seen running (tasks keep no start)
        self._lock = threading.Lock()
        self._fast_until = 0.0  # monotonic time until which tasks are looked at every FAST_POLL (attempts starting)

    def nodes(self) -> builtins.list[NodeInfo]:
        return swarm_nodes(self._api, self.gpu_kind)

    def data_probe(self, data_dir: Path, host_data_dir: Path, image: str) -> SwarmDataProbe:
        """The check that every node sees the data folder (controller/nodes.py runs it for each new node)."""
        return SwarmDataProbe(self._api, data_dir, host_data_dir, image, self.instance)

    def daemon_started_at(self) -> datetime | None:
        """None: the engines that run the jobs are the nodes', not one local daemon."""
        return None

    # -- observing ---------------------------------------------------------------------------------------------------

    def _services(self) -> list[dict]:
        try:
            return self._call(self._api.services, filters={"label": self._scope})
        except derr.APIError as err:
            raise RuntimeUnavailable(f"list services: {err.explanation or err}") from err

    def _tasks(self, service_ids: builtins.list[str]) -> dict[str, builtins.list[dict]]:
        if not service_ids:
            return {}
        try:
            try:
                tasks = self._call(self._api.tasks, filters={"service": service_ids})
            except derr.NotFound:  # one of them was removed meanwhile: every task, sorted out here
                wanted = set(service_ids)
                tasks = [t for t in self._call(self._api.tasks) if t.get("ServiceID") in wanted]
        except derr.APIError as err:
            raise RuntimeUnavailable(f"list tasks: {err.explanation or err}") from err
        out: dict[str, builtins.list[dict]] = {sid: [] for sid in service_ids}
        for t in tasks:
            out.setdefault(t.get("ServiceID", ""), []).append(t)
        return out

    def _service(self, name: str) -> dict | None:
        try:
            return self._call(self._api.inspect_service, service_name(name))
        except derr.NotFound:
            return None
        except derr.APIError as err:
            raise RuntimeUnavailable(f"inspect service {name}: {err.explanation or err}") from err

    def list(self) -> list[ContainerInfo]:
        services = self._services()
        tasks = self._tasks([s["ID"] for s in services])
        return [self._info(s, tasks.get(s["ID"], [])) for s in services]

    def inspect(self, name: str) -> ContainerInfo | None:
        svc = self._service(name)
        if svc is None:
            return None
        return self._info(svc, self._tasks([svc["ID"]]).get(svc["ID"], []))

    def _info(self, svc: dict, tasks: builtins.list[dict]) -> ContainerInfo:
        spec = svc.get("Spec") or {}
        labels = dict(spec.get("Labels") or {})
        template = spec.get("TaskTemplate") or {}
        limits = (template.get("Resources") or {}).get("Limits") or {}
        grace = (template.get("ContainerSpec") or {}).get("StopGracePeriod")
        task = _current(tasks)
        stopped = completions(svc) == 0
        state, exit_code, error, waiting = "created", None, "", None
        started_at = parse_engine_time(labels.get(LABEL_STARTED))
        finished_at = None
        if task is not None:
            status = task.get("Status") or {}
            tstate = status.get("State", "")
            error = status.get("Err") or ""
            when = parse_engine_time(status.get("Timestamp"))
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            if tstate == "running":
                state = "running"
                started_at = self._seen_running(task["ID"], when)
            elif tstate in ("rejected",) or (tstate == "failed" and not _ran(status)):
                state = "created"  # the engine refused it: `start` says so, as Docker's start would
            elif tstate in ("complete", "failed", "shutdown"):
                state, exit_code, finished_at = "exited", (code if code is not None else KILLED), when
                # a task keeps no start time: when it was seen running, else when it was made (a short job can
                # end between two looks)
                started_at = started_at or self._started.get(task["ID"]) or parse_engine_time(task.get("CreatedAt"))
            elif tstate in ("orphaned", "remove"):
                state, finished_at = "dead", when
            elif tstate == "pending" and "no suitable node" in error:
                waiting = error
        if stopped and state not in ("running",):
            state = "exited"
            exit_code = _int(labels.get(LABEL_EXIT), exit_code if exit_code is not None else KILLED)
            finished_at = parse_engine_time(labels.get(LABEL_FINISHED)) or finished_at
            finished_at = finished_at or parse_engine_time(labels.get(LABEL_STOPPED))
        return ContainerInfo(
            id=svc["ID"],
            name=labels.get(LABEL_CONTAINER) or spec.get("Name", ""),
            job=labels.get(LABEL_JOB, ""),
            generation=labels.get("opeva.generation", ""),
            run=labels.get("opeva.run", ""),
            attempt=int(labels.get("opeva.attempt", "0") or 0),
            state=state,
            exit_code=exit_code,
            error=error,
            created_at=parse_engine_time(svc.get("CreatedAt")),
            started_at=started_at,
            finished_at=finished_at,
            stop_grace=int(grace / 1e9) if grace else None,
            labels=labels,
            cpus=limits["NanoCPUs"] / 1e9 if limits.get("NanoCPUs") else None,
            memory=limits.get("MemoryBytes") or None,
            gpu_ids=tuple(g for g in labels.get(LABEL_GPUS, "").split(",") if g),
            waiting=self._waiting(waiting, limits) if waiting else None,
            node=(task or {}).get("NodeID") or "",
        )

    def _seen_running(self, task_id: str, when: datetime | None) -> datetime | None:
        with self._lock:
            if task_id not in self._started and when is not None:
                self._started[task_id] = when
            return self._started.get(task_id)

    def _waiting(self, message: str, limits: dict) -> str:
        nodes: list[dict] = []
        if "insufficient resources" in message:
            try:
                nodes = [n for n in self._call(self._api.nodes) if (n.get("Status") or {}).get("State") == "ready"]
            except derr.APIError:
                nodes = []
        cpus = limits["NanoCPUs"] / 1e9 if limits.get("NanoCPUs") else None
        return waiting_reason(message, cpus, limits.get("MemoryBytes"), nodes)

    # -- acting ------------------------------------------------------------------------------------------------------

    def create_and_start(self, req: ContainerRequest) -> ContainerInfo:
        """Create the attempt's service; Swarm places and starts its task when it can (no wait here: the attempt is
        `created` until then, as a Docker container between create and start)."""
        labels = {**req.labels, LABEL_CONTAINER: req.name}
        if req.gpu_ids:
            labels[LABEL_GPUS] = ",".join(req.gpu_ids)
        container = ContainerSpec(
            req.image,
            command=req.entrypoint,
            args=req.command,
            env=dict(req.env),
            workdir=req.working_dir,
            user=req.user,
            labels=labels,
            mounts=[
                DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in req.mounts
            ],
            stop_grace_period=int(req.stop_grace * 1e9),
            init=req.init,
            cap_drop=["ALL"],
            cap_add=list(req.cap_add) or None,
        )
        template = TaskTemplate(
            container,
            resources=self._resources(req),
            restart_policy=RestartPolicy(condition="none", max_attempts=0),
            placement=Placement(constraints=list(req.placement)) if req.placement else None,
            networks=[req.network] if req.network and req.network not in ("none", "default") else None,
        )
        try:
            with metrics.timed(metrics.CONTAINER_SECONDS.labels("create")):
                created = self._call(
                    self._api.create_service,
                    template,
                    name=service_name(req.name),
                    labels=labels,
                    mode=ServiceMode("replicated-job", replicas=1, concurrency=1),
                )
            self._fast_until = time.monotonic() + FAST_WINDOW  # its start is seen at once, as Docker's start event
        except derr.APIError as err:
            if err.status_code == 409:
                raise NameConflict(req.name) from err
            if err.status_code in (400, 404):
                raise CreateRejected(f"Swarm refused the service: {err.explanation or err}") from err
            raise RuntimeUnavailable(f"create {req.name}: {err.explanation or err}") from err
        return ContainerInfo(
            id=created["ID"],
            name=req.name,
            job=req.labels.get(LABEL_JOB, ""),
            generation=req.labels.get("opeva.generation", ""),
            run=req.labels.get("opeva.run", ""),
            attempt=int(req.labels.get("opeva.attempt", "0") or 0),
            state="created",
            created_at=datetime.now(UTC),
            stop_grace=req.stop_grace,
            labels=labels,
            cpus=req.cpus,
            memory=req.memory,
        )

    def _resources(self, req: ContainerRequest) -> Resources | None:
        """CPUs and memory as limits and reservations (Swarm places by reservations); GPUs as a reservation of
        generic resources of `gpu_kind`, one per GPU share the scheduler gave the attempt (Swarm picks the devices
        on the node and hands their ids to the NVIDIA runtime in DOCKER_RESOURCE_<KIND>)."""
        if not req.cpus and not req.memory and not req.gpu_ids:
            return None
        nano = int(req.cpus * 1e9) if req.cpus else None
        return Resources(
            cpu_limit=nano,
            cpu_reservation=nano,
            mem_limit=req.memory,
            mem_reservation=req.memory,
            generic_resources={self.gpu_kind: len(req.gpu_ids)} if req.gpu_ids else None,
        )

    def pull(self, image: str) -> str | None:
        """Each node pulls an attempt's image itself when its task starts (Swarm's own rule); nothing to do here."""
        return None

    def start(self, name: str) -> None:
        """Swarm starts tasks itself. A task it refused (no image on the node, a bad mount, an executable that does
        not exist) fails the attempt here with Swarm's words, as Docker's start would."""
        try:  # the tasks filter takes a service's name: one call
            task = _current(self._call(self._api.tasks, filters={"service": service_name(name)}))
        except derr.NotFound:
            return
        except derr.APIError as err:
            raise RuntimeUnavailable(f"tasks of {name}: {err.explanation or err}") from err
        if task is None:
            return
        status = task.get("Status") or {}
        if status.get("State") == "rejected" or (status.get("State") == "failed" and not _ran(status)):
            text = status.get("Err") or status.get("Message") or "rejected"
            if "No such image" in text or "pull access denied" in text:
                raise ImageMissing(f"image not present on node {task.get('NodeID', '?')}: {text}")
            raise CreateRejected(f"Swarm could not start {name}: {text}")

    def stop(self, name: str, grace: int) -> None:
        """Scale the job to 0 completions: its task gets SIGTERM, then SIGKILL after the stop grace period it was
        created with. Its end is watched and kept in the service's labels (Swarm deletes the task right after)."""
        svc = self._service(name)
        if svc is None or completions(svc) == 0:
            return
        task = _current(self._tasks([svc["ID"]]).get(svc["ID"], []))
        asked = datetime.now(UTC)
        self._update(svc["ID"], {LABEL_STOPPED: _iso(asked)}, zero=True)
        if task is None or (task.get("Status") or {}).get("State") in ENDED:
            return
        started = self._started.get(task["ID"]) or parse_engine_time((task.get("Status") or {}).get("Timestamp"))
        deadline = time.monotonic() + grace + 30
        last, seen_end = task, False
        while time.monotonic() < deadline:
            try:
                last = self._call(self._api.inspect_task, task["ID"])
            except derr.NotFound:
                break
            except derr.APIError as err:
                raise RuntimeUnavailable(f"stop {name}: {err.explanation or err}") from err
            if (last.get("Status") or {}).get("State") in ENDED:
                seen_end = True
                break
            time.sleep(0.05)
        status = last.get("Status") or {}
        code = (status.get("ContainerStatus") or {}).get("ExitCode") if seen_end else None
        now = datetime.now(UTC)
        if code is None or code < 0:  # ended unseen: within the grace period it was the SIGTERM, after it SIGKILL
            code = 143 if (now - asked).total_seconds() < grace else KILLED
        finished = parse_engine_time(status.get("Timestamp")) if seen_end else now
        end = {LABEL_EXIT: str(code), LABEL_FINISHED: _iso(finished or now)}
        if started is not None:
            end[LABEL_STARTED] = _iso(started)
        self._update(svc["ID"], end, zero=True)

    def _update(self, service_id: str, labels: dict[str, str], zero: bool) -> None:
        """Add labels (on the service) and set 0 completions; retried when another update came first."""
        for _ in range(5):
            try:
                svc = self._call(self._api.inspect_service, service_id)
            except derr.NotFound:
                return
            spec = svc["Spec"]
            spec["Labels"] = {**(spec.get("Labels") or {}), **labels}
            if zero:
                spec["Mode"] = {"ReplicatedJob": {**spec["Mode"].get("ReplicatedJob", {}), "TotalCompletions": 0}}
            spec.pop("UpdateConfig", None)  # jobs may not have one
            try:
                res = self._call(
                    self._raw._post_json,
                    self._raw._url("/services/{0}/update", service_id),
                    data=spec,
                    params={"version": svc["Version"]["Index"]},
                )
                self._raw._raise_for_status(res)
                return
            except derr.NotFound:
                return
            except derr.APIError as err:
                if "update out of sequence" in str(err.explanation or err):
                    continue
                raise RuntimeUnavailable(f"update service {service_id}: {err.explanation or err}") from err
        raise RuntimeUnavailable(f"update service {service_id}: kept conflicting with other updates")

    def remove(self, name: str) -> None:
        """Remove the attempt's service, its task stopped first (a removed job's running task would live on)."""
        svc = self._service(name)
        if svc is None:
            return
        tasks = self._tasks([svc["ID"]]).get(svc["ID"], [])
        if completions(svc) > 0 and any((t.get("Status") or {}).get("State") not in ENDED for t in tasks):
            self._update(svc["ID"], {LABEL_STOPPED: _iso(datetime.now(UTC))}, zero=True)
            self._await_shutdown_ordered(svc["ID"])
        try:
            self._call(self._api.remove_service, svc["ID"])
        except derr.NotFound:
            pass
        except derr.APIError as err:
            raise RuntimeUnavailable(f"remove {name}: {err.explanation or err}") from err
        with self._lock:
            for t in tasks:
                self._started.pop(t["ID"], None)

    def _await_shutdown_ordered(self, service_id: str, timeout: float = 10.0) -> None:
        """Until Swarm has told every live task of the service to go (desired state `remove`): once the service is
        deleted nothing would tell them any more (a node that is down hears it when it comes back)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self._tasks([service_id]).get(service_id, [])
            if all(t.get("DesiredState") == "remove" or (t.get("Status") or {}).get("State") in ENDED for t in tasks):
                return
            time.sleep(0.05)

    def stats(self, name: str):
        """None: a manager serves no per-task resource figures (the sampler records none on Swarm)."""
        return None

    # -- watching ----------------------------------------------------------------------------------------------------

    def _states(self) -> dict[str, tuple[str, str]]:
        """attempt name -> (job, what its task is doing) for every task of ours: one call (a task filter by label
        matches its service's labels; our labels are on the container spec too)."""
        try:
            tasks = self._call(self._api.tasks, filters={"label": self._scope})
        except derr.APIError as err:
            raise RuntimeUnavailable(f"list tasks: {err.explanation or err}") from err
        newest: dict[str, dict] = {}
        for t in tasks:
            labels = ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
            name = labels.get(LABEL_CONTAINER)
            if name and (name not in newest or t.get("CreatedAt", "") > newest[name].get("CreatedAt", "")):
                newest[name] = t
        out = {}
        for name, t in newest.items():
            labels = t["Spec"]["ContainerSpec"]["Labels"]
            status = t.get("Status") or {}
            out[name] = (labels.get(LABEL_JOB, ""), f"{status.get('State', '')}/{t.get('DesiredState', '')}")
        return out

    def events(self) -> Iterator[EngineEvent]:
        """What changed in our tasks, looked at every `poll` seconds (the event stream of a 20.10 manager has no
        task events). Connects now; raises RuntimeUnavailable when the manager goes away. A task that ended is a
        `die`, one that runs a `start`; any other change (placed, refused, gone with its service) an `update`,
        which the loop answers with an inspect."""
        return self._changes(self._states())

    def _changes(self, last: dict[str, tuple[str, str]]) -> Iterator[EngineEvent]:
        while True:
            time.sleep(FAST_POLL if time.monotonic() < self._fast_until else self.poll)
            now = self._states()
            for name, (job, state) in now.items():
                if last.get(name, ("", ""))[1] != state:
                    kind = state.split("/")[0]
                    action = "start" if kind == "running" else "die" if kind in ENDED else "update"
                    yield EngineEvent(job=job, action=action, container=name)
            for name in last.keys() - now.keys():
                yield EngineEvent(job=last[name][0], action="update", container=name)
            last = now

    def logs(self, name: str, since: float | None) -> Iterator[bytes]:
        """Timestamped stdout+stderr frames of the attempt's task, until it has ended. A manager's follow stream of
        a job never ends by itself: it is read beside a watch of the task, and once the task has ended whatever
        came after the last frame is read once more without following."""
        svc = self._service(name)
        if svc is None:
            return
        sid = svc["ID"]
        params: dict[str, Any] = {"details": False, "follow": True, "stdout": True, "stderr": True, "timestamps": True}
        params["since"] = since or 0
        if self._ended(sid):  # done already (a short job, a restart): one read, no stream to watch
            yield from self._read_after(sid, params, _Cursor())
            return
        res = self._call(self._raw._get, self._raw._url("/services/{0}/logs", sid), params=params, stream=True)
        try:
            self._raw._raise_for_status(res)
        except derr.NotFound:
            return
        raw = self._raw._get_raw_response_socket(res)
        sock = getattr(raw, "_sock", raw)  # a unix socket comes wrapped in a SocketIO
        frames: queue.Queue = queue.Queue()

        def read() -> None:
            try:
                for frame in self._raw._multiplexed_response_stream_helper(res):
                    frames.put(frame)
            except Exception:
                pass
            finally:
                frames.put(_END)

        reader = threading.Thread(target=read, name=f"swarm-logs-{name}", daemon=True)
        reader.start()
        cursor = _Cursor()
        ended = False
        quiet = LOG_QUIET_FIRST  # a pause in the output: is the task done? asked soon, then less often
        try:
            while True:
                try:
                    frame = frames.get(timeout=quiet)
                except queue.Empty:
                    if self._ended(sid):
                        ended = True
                        break
                    quiet = min(quiet * 2, LOG_QUIET_MAX)
                    continue
                if frame is _END:
                    ended = self._ended(sid)
                    break
                quiet = LOG_QUIET_FIRST
                cursor.take(_checked(frame))
                yield frame
        finally:  # closing the response would wait for the reader: end its socket instead
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            reader.join(5)
            res.close()
        if ended:
            yield from self._read_after(sid, params, cursor)

    def _read_after(self, service_id: str, params: dict[str, Any], cursor: _Cursor) -> Iterator[bytes]:
        """The frames after `cursor`, read once without following."""
        since = cursor.since() if cursor.ts else params["since"]
        try:
            frames = self._call(
                self._api.service_logs, service_id, is_tty=False, **{**params, "follow": False, "since": since}
            )
            yield from cursor.new(_checked(f) for f in frames)
        except derr.NotFound:
            return

    def _ended(self, service_id: str) -> bool:
        """The attempt's task has ended (or is gone with its service)."""
        task = _current(self._tasks([service_id]).get(service_id, []))
        if task is not None:
            return (task.get("Status") or {}).get("State") in ENDED
        try:
            return completions(self._call(self._api.inspect_service, service_id)) == 0
        except derr.NotFound:
            return True


class _Cursor:
    """The last frame's timestamp and how many frames carried it, so a second read from a second earlier yields
    only what is new (the discipline of logcapture's cursor, within one call)."""

    def __init__(self) -> None:
        self.ts = 0
        self.count = 0

    def take(self, frame: bytes) -> None:
        t = _stamp(frame)
        if t is None:
            return
        if t == self.ts:
            self.count += 1
        elif t > self.ts:
            self.ts, self.count = t, 1

    def since(self) -> float:
        return self.ts / 1e9 - 1 if self.ts else 0

    def new(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        """The frames of a re-read that come after the cursor."""
        resume, skip = self.ts, self.count
        for frame in frames:
            t = _stamp(frame)
            if resume and t is not None:
                if t < resume or (t == resume and skip > 0):
                    skip -= t == resume
                    continue
                resume = 0
            self.take(frame)
            yield frame


def _stamp(frame: bytes) -> int | None:
    try:
        return timestamp_ns(frame.partition(b" ")[0].decode())
    except ValueError:
        return None


def _checked(frame: bytes) -> bytes:
    """A manager that cannot reach the task's node sends its error as log text (docker-py does not raise)."""
    if frame.startswith(b"Error grabbing logs"):
        raise RuntimeUnavailable(frame.decode(errors="replace").strip())
    return frame


def completions(svc: dict) -> int:
    mode = ((svc.get("Spec") or {}).get("Mode") or {}).get("ReplicatedJob") or {}
    return int(mode.get("TotalCompletions", 1))


def _current(tasks: list[dict]) -> dict | None:
    """The attempt's task: its only one, or the newest if Swarm made another."""
    return max(tasks, key=lambda t: t.get("CreatedAt", ""), default=None)


def _ran(status: dict) -> bool:
    """The task's container ran (a failed task that never started has no exit of its own)."""
    err = status.get("Err") or ""
    return not err.startswith("starting container failed") and "ContainerStatus" in status


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
