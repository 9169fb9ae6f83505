"""The Docker runtime, on the `docker` SDK: all the reconcile loop asks of the engine goes through here (the
start-up host-path check in hostpaths.py reads the engine's view of our own container on its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from docker import errors as derr
from docker.types import DeviceRequest
from docker.types import Mount as DockerMount

from .. import metrics
from ..constraints import mismatches
from ..jobsecurity import NO_NEW_PRIVILEGES
from .base import (
    LABEL_ATTEMPT,
    LABEL_GENERATION,
    LABEL_JOB,
    LABEL_RUN,
    ContainerInfo,
    ContainerRequest,
    ContainerStats,
    CreateRejected,
    EngineEvent,
    ImageMissing,
    NameConflict,
    NodeInfo,
    RuntimeUnavailable,
    parse_engine_time,
)
from .client import EngineClient

WATCHED_ACTIONS = frozenset({"start", "die", "oom", "destroy"})
_TRANSIENT = ("context deadline exceeded", "timeout", "connection refused", "try again")


def _to_info(attrs: dict[str, Any]) -> ContainerInfo:
    """ContainerInfo from an inspect (`State` object) or a list entry (`State` string)."""
    labels = (attrs.get("Config") or {}).get("Labels") or attrs.get("Labels") or {}
    state = attrs.get("State")
    name = (attrs.get("Name") or (attrs.get("Names") or ["?"])[0]).lstrip("/")
    base = dict(
        id=attrs["Id"],
        name=name,
        job=labels.get(LABEL_JOB, ""),
        generation=labels.get(LABEL_GENERATION, ""),
        run=labels.get(LABEL_RUN, ""),
        attempt=int(labels.get(LABEL_ATTEMPT, "0") or 0),
        labels=labels,
    )
    if isinstance(state, dict):
        status = state.get("Status", "")
        host = attrs.get("HostConfig") or {}
        nano, period = host.get("NanoCpus") or 0, host.get("CpuPeriod") or 100_000
        cpus = nano / 1e9 if nano else (host["CpuQuota"] / period if (host.get("CpuQuota") or 0) > 0 else None)
        gpus = tuple(str(d) for r in host.get("DeviceRequests") or [] for d in r.get("DeviceIDs") or [])
        return ContainerInfo(
            **base,
            state=status,
            exit_code=state.get("ExitCode") if status in ("exited", "dead") else None,
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or "",
            created_at=parse_engine_time(attrs.get("Created")),
            started_at=parse_engine_time(state.get("StartedAt")),
            finished_at=parse_engine_time(state.get("FinishedAt")),
            stop_grace=(attrs.get("Config") or {}).get("StopTimeout"),
            cpus=cpus,
            memory=host.get("Memory") or None,
            gpu_ids=gpus,
        )
    return ContainerInfo(**base, state=state or "unknown")


INIT_EXEC_FAILED = 127  # docker-init's exit code when it cannot exec the container's program


class DockerRuntime(EngineClient):
    """Docker behind the `Runtime` interface. Calls time out, and engine errors become our error types."""

    def __init__(self, base_url: str | None = None, timeout: int = 30, instance: str | None = None):
        super().__init__(base_url, timeout, instance)
        self._this_node: NodeInfo | None = None

    def daemon_started_at(self) -> datetime | None:
        """When the local dockerd process started, read from /proc; None when the engine is not local."""
        try:
            pid = int(open("/var/run/docker.pid").read().strip())
            ticks = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
            btime = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
            return datetime.fromtimestamp(btime + ticks / os.sysconf("SC_CLK_TCK"), UTC)
        except (OSError, ValueError, StopIteration, IndexError):
            return None

    def list(self) -> list[ContainerInfo]:
        """All managed containers, fully inspected (exit codes and times need the inspect form)."""
        summaries = self._call(self._api.containers, all=True, filters={"label": self._scope})
        out = []
        for s in summaries:
            info = self.inspect(s["Id"])
            if info is not None:
                out.append(info)
        return out

    def inspect(self, name: str) -> ContainerInfo | None:
        try:
            return _to_info(self._call(self._api.inspect_container, name))
        except derr.NotFound:
            return None
        except derr.APIError as err:
            raise RuntimeUnavailable(f"inspect {name}: {err.explanation or err}") from err

    def ensure_image(self, image: str) -> None:
        """Use the local image when present; pull it otherwise."""
        try:
            self._call(self._api.inspect_image, image)
            return
        except derr.ImageNotFound:
            pass
        except derr.APIError as err:
            raise RuntimeUnavailable(f"inspect image {image}: {err.explanation or err}") from err
        repo, tag = _split_image(image)
        try:
            self._call(self._api.pull, repo, tag=tag)
        except derr.APIError as err:
            raise ImageMissing(
                f"image {image} is not present locally and could not be pulled: {err.explanation or err}"
            ) from err

    def pull(self, image: str) -> str | None:
        repo, tag = _split_image(image)
        try:
            self._call(self._api.pull, repo, tag=tag)
            return None
        except derr.APIError as err:
            reason = str(err.explanation or err)
        try:
            self._call(self._api.inspect_image, image)
        except derr.ImageNotFound:
            raise ImageMissing(f"image {image} could not be pulled ({reason}) and is not present locally") from None
        except derr.APIError as err:
            raise RuntimeUnavailable(f"inspect image {image}: {err.explanation or err}") from err
        return f"could not pull {image} ({reason}); using the local image"

    def nodes(self) -> Sequence[NodeInfo]:
        """This machine, the one node a single engine has."""
        info = self._call(self._api.info)
        labels = dict(label.split("=", 1) if "=" in label else (label, "") for label in info.get("Labels") or [])
        node = NodeInfo(
            id=info.get("ID") or "local",
            hostname=info.get("Name") or "local",
            engine_labels=labels,
            cpus=float(info.get("NCPU") or 0),
            memory=int(info.get("MemTotal") or 0),
            os=info.get("OSType") or "linux",
            arch=info.get("Architecture") or "",
            leader=True,
            engine_version=info.get("ServerVersion") or "",
        )
        self._this_node = node
        return [node]

    def _check_placement(self, req: ContainerRequest) -> None:
        """A single engine runs jobs here only: constraints that do not hold on this machine refuse the job."""
        if not req.placement:
            return
        node = self._this_node or self.nodes()[0]
        unmet = mismatches(node, req.placement)
        if unmet:
            raise CreateRejected(
                f"placement {', '.join(unmet)} does not hold on this machine ({node.hostname}); the docker runtime "
                "runs jobs on its own engine only (use the swarm runtime to place jobs on other nodes)"
            )

    def create_and_start(self, req: ContainerRequest) -> ContainerInfo:
        self._check_placement(req)
        host_config = self._api.create_host_config(
            mounts=[
                DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in req.mounts
            ],
            network_mode=req.network,
            init=req.init,
            cap_drop=["ALL"],
            cap_add=list(req.cap_add) or None,
            security_opt=[NO_NEW_PRIVILEGES],
            nano_cpus=int(req.cpus * 1e9) if req.cpus else None,
            mem_limit=req.memory,
            device_requests=[DeviceRequest(driver="nvidia", device_ids=list(req.gpu_ids), capabilities=[["gpu"]])]
            if req.gpu_ids
            else None,
        )

        def create():
            with metrics.timed(metrics.CONTAINER_SECONDS.labels("create")):
                return self._call(
                    self._api.create_container,
                    req.image,
                    name=req.name,
                    command=req.command,
                    entrypoint=req.entrypoint,
                    environment=req.env,
                    working_dir=req.working_dir,
                    user=req.user,
                    labels=req.labels,
                    host_config=host_config,
                    stop_timeout=req.stop_grace,
                    detach=True,
                )

        try:
            try:
                created = create()
            except derr.ImageNotFound:  # like `docker run`: pull only when the image is not local
                if req.pull_policy == "Never":
                    raise ImageMissing(f"image {req.image} is not present locally (imagePullPolicy: Never)") from None
                self.ensure_image(req.image)
                created = create()
        except derr.APIError as err:
            if err.status_code == 409:
                raise NameConflict(req.name) from err
            if err.status_code in (400, 404):
                raise CreateRejected(f"Docker refused the container: {err.explanation or err}") from err
            raise RuntimeUnavailable(f"create {req.name}: {err.explanation or err}") from err
        self.start(created["Id"])
        info = self.inspect(created["Id"])
        if info is None:
            raise RuntimeUnavailable(f"container {req.name} vanished right after start")
        if req.init and info.exited and info.exit_code == INIT_EXEC_FAILED:
            self._refused_by_init(created["Id"])
        return info

    def _refused_by_init(self, container: str) -> None:
        """With an init process the engine no longer refuses a program that does not exist: the init reports it and
        exits 127 at once. Its message is the engine's refusal, so the attempt fails as a refused start would."""
        try:
            text = self._call(self._api.logs, container, stdout=True, stderr=True, tail=5).decode(errors="replace")
        except derr.APIError:
            return
        line = next((ln for ln in text.splitlines() if ln.startswith("[FATAL tini") and " exec " in ln), None)
        if line is None:
            return
        self.remove(container)
        raise CreateRejected(f"the container's program could not be started: {line.split('] ', 1)[-1]}")

    def stats(self, name: str) -> ContainerStats | None:
        try:
            raw = self._call(self._api.stats, name, stream=False, one_shot=True)
        except derr.NotFound:
            return None
        except derr.APIError as err:
            raise RuntimeUnavailable(f"stats {name}: {err.explanation or err}") from err
        cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
        mem = raw.get("memory_stats") or {}
        if "total_usage" not in cpu:
            return None  # not running
        inner = mem.get("stats") or {}
        cache = inner.get("inactive_file", inner.get("total_inactive_file", inner.get("cache", 0)))
        limit = mem.get("limit")
        return ContainerStats(
            cpu_seconds=cpu["total_usage"] / 1e9,
            memory=max(0, int(mem.get("usage", 0)) - int(cache or 0)),
            memory_limit=int(limit) if limit else None,
        )

    def start(self, name: str) -> None:
        try:
            with metrics.timed(metrics.CONTAINER_SECONDS.labels("start")):
                self._call(self._api.start, name)
        except derr.APIError as err:
            text = str(err.explanation or err)
            if err.status_code == 304 or "already started" in text:
                return
            # the engine refusing the container (no such executable, a bad mount, a GPU driver it lacks) is about
            # the job's definition and fails the job with Docker's words; a timeout inside the engine may pass
            if (err.status_code or 0) >= 500 and any(t in text for t in _TRANSIENT):
                raise RuntimeUnavailable(f"start {name}: {text}") from err
            raise CreateRejected(f"Docker could not start {name}: {text}") from err

    def stop(self, name: str, grace: int) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; an already stopped or removed container is fine."""
        try:
            self._call(self._api.stop, name, timeout=grace)
        except derr.NotFound:
            pass
        except derr.APIError as err:
            if err.status_code != 304:
                raise RuntimeUnavailable(f"stop {name}: {err.explanation or err}") from err

    def remove(self, name: str) -> None:
        try:
            self._call(self._api.remove_container, name, force=True)
        except derr.NotFound:
            pass
        except derr.APIError as err:
            if err.status_code != 409:  # removal already in progress
                raise RuntimeUnavailable(f"remove {name}: {err.explanation or err}") from err

    def events(self) -> Iterator[EngineEvent]:
        """Container events of our containers. Connects now (raising if the engine is away); the iterator ends or
        raises when the engine goes away."""
        stream = self._call(self._api.events, decode=True, filters={"type": "container", "label": self._scope})
        return self._engine_events(stream)

    @staticmethod
    def _engine_events(stream) -> Iterator[EngineEvent]:
        for ev in stream:
            action = (ev.get("Action") or ev.get("status") or "").split(":")[0]
            if action not in WATCHED_ACTIONS:
                continue
            attrs = (ev.get("Actor") or {}).get("Attributes") or {}
            yield EngineEvent(job=attrs.get(LABEL_JOB, ""), action=action, container=attrs.get("name", ""))

    def logs(self, name: str, since: float | None) -> Iterator[bytes]:
        """Timestamped stdout+stderr frames, following until the container stops."""
        kwargs: dict[str, Any] = dict(stdout=True, stderr=True, stream=True, follow=True, timestamps=True)
        if since:
            kwargs["since"] = since
        try:
            yield from self._call(self._api.logs, name, **kwargs)
        except derr.NotFound:
            return


def _split_image(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"
