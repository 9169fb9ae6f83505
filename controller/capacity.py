"""What the machine offers to jobs: CPUs, memory and GPU device ids, less a reserve, plus the concurrency limits.

Detected figures come from the kernel (CPU affinity, /proc/meminfo, cgroup v1/v2 limits) and from `nvidia-smi` when
it is installed; every figure can be set instead (`--cpus`, `--memory`, `--gpus`, `--max-running`, `--queues`, or
their `OPEVA_*` variables). The only code here that touches the system is `detect_*`; `Capacity` is a plain value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .runtime.base import NodeInfo
from .spec import parse_memory

DEFAULT_RESERVE_MEMORY = 256 * 2**20  # for the OS, Docker and the controller itself


@dataclass(frozen=True)
class Capacity:
    """The schedulable machine. `max_running` None is no limit; a queue absent from `queues` has no limit."""

    cpus: float
    memory: int  # bytes
    gpu_ids: tuple[str, ...] = ()
    max_running: int | None = None
    queues: Mapping[str, int] = field(default_factory=dict)  # queue name -> maxRunning
    # a cluster's every node, ready or not: what a job must fit to be schedulable at all (None: this capacity), so a
    # node that is down for a while makes bigger jobs wait, not fail
    whole: Capacity | None = None
    # a cluster's nodes as (name, CPUs, memory, GPUs), each less the reserve: a job must fit one of them whole
    nodes: tuple[tuple[str, float, int, int], ...] = ()

    @property
    def bound(self) -> Capacity:
        return self.whole or self

    def describe(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "memory": self.memory,
            "memoryHuman": format_bytes(self.memory),
            "gpus": list(self.gpu_ids),
            "maxRunning": self.max_running,
            "queues": dict(self.queues),
        }


def format_bytes(n: float) -> str:
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{int(n)}B"


def format_cpus(n: float) -> str:
    return f"{n:g} CPU" + ("" if n == 1 else "s")


# ---- detection ------------------------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def detect_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota when one is set."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    quota = None
    v2 = _read("/sys/fs/cgroup/cpu.max")  # "max 100000" or "150000 100000"
    if v2:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            quota = int(parts[0]) / int(parts[1])
    else:
        q, p = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q and p and int(q) > 0:
            quota = int(q) / int(p)
    return min(cpus, quota) if quota else cpus


def detect_memory() -> int:
    """Bytes of memory: MemTotal, capped by a cgroup memory limit when one is set."""
    total = 0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
            break
    if not total:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        value = _read(path)
        if value and value.isdigit() and 0 < int(value) < total:
            return int(value)
    return total


def detect_gpus(timeout: float = 10.0) -> tuple[str, ...]:
    """GPU indices from `nvidia-smi`; none when it is not installed or fails."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ()
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


# ---- settings -------------------------------------------------------------------------------------------------
def parse_gpu_list(value: str | None) -> tuple[str, ...] | None:
    """`0,1,2` -> ids; `none` or empty -> no GPUs; None -> detect."""
    if value is None:
        return None
    value = value.strip()
    if value.lower() in ("", "none"):
        return ()
    ids = tuple(v.strip() for v in value.split(",") if v.strip())
    if len(set(ids)) != len(ids):
        raise ValueError(f"GPU list {value!r} names a device twice")
    return ids


def parse_queues(value: str | Mapping | None) -> dict[str, int]:
    """Queue limits from a mapping, inline JSON, or a YAML/JSON file: `{gpu-long: {maxRunning: 2}}`."""
    if value is None or value == "":
        return {}
    source = "queues"
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith(("{", "[")):
            source = text
            try:
                text = Path(text).read_text()
            except OSError as err:
                raise ValueError(f"cannot read queues file {value}: {err.strerror or err}") from None
        try:
            value = yaml.safe_load(text) if source != "queues" else json.loads(text)
        except (ValueError, yaml.YAMLError) as err:
            raise ValueError(f"{source}: not valid {'JSON' if source == 'queues' else 'YAML/JSON'}: {err}") from None
    if isinstance(value, Mapping) and set(value) == {"queues"}:
        value = value["queues"]  # a settings file may wrap the map in `queues:`
    if not isinstance(value, Mapping):
        raise ValueError(f'{source}: expected a mapping like {{"gpu-long": {{"maxRunning": 2}}}}')
    out = {}
    for name, conf in value.items():
        if not isinstance(conf, Mapping) or set(conf) != {"maxRunning"}:
            raise ValueError(f"{source}: queue {name!r} must be {{maxRunning: N}}, got {conf!r}")
        limit = conf["maxRunning"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"{source}: queue {name!r}: maxRunning must be a non-negative integer")
        out[str(name)] = limit
    return out


def machine_capacity(
    cpus: float | None = None,
    memory: int | str | None = None,
    gpus: tuple[str, ...] | None = None,
    reserve_cpus: float | None = None,
    reserve_memory: int | str | None = None,
    max_running: int | None = None,
    queues: Mapping[str, int] | None = None,
) -> Capacity:
    """The capacity jobs may use. A given figure is what jobs get; a detected one loses the reserve first."""
    if cpus is not None:
        job_cpus = float(cpus)
    else:
        job_cpus = detect_cpus() - (reserve_cpus or 0.0)
    if memory is not None:
        job_memory = parse_memory(memory)
    else:
        job_memory = detect_memory() - (
            DEFAULT_RESERVE_MEMORY if reserve_memory is None else parse_memory(reserve_memory)
        )
    if max_running is not None and max_running < 0:
        raise ValueError("maxRunning must be a non-negative integer")
    return Capacity(
        cpus=max(job_cpus, 0.0),
        memory=max(job_memory, 0),
        gpu_ids=tuple(gpus) if gpus is not None else detect_gpus(),
        max_running=max_running,
        queues=dict(queues or {}),
    )


def cluster_capacity(
    nodes: Iterable[NodeInfo],
    template: Capacity,
    excluded: Collection[str] = (),
    cpus: float | None = None,
    memory: int | str | None = None,
    gpus: tuple[str, ...] | None = None,
    reserve_cpus: float | None = None,
    reserve_memory: int | str | None = None,
) -> Capacity:
    """The capacity of a cluster: the sum over the nodes new jobs may go to (ready, active, not `excluded`), each
    less the reserve; a given figure wins, as on one machine. GPUs are `NODE/ID` tokens: the scheduler counts them,
    the engine picks the devices. The limits (maxRunning, queues) come from `template`."""
    nodes = list(nodes)
    keep_memory = DEFAULT_RESERVE_MEMORY if reserve_memory is None else parse_memory(reserve_memory)

    def total(over: list[NodeInfo]) -> Capacity:
        total_cpus = float(cpus) if cpus is not None else sum(max(n.cpus - (reserve_cpus or 0.0), 0.0) for n in over)
        total_memory = parse_memory(memory) if memory is not None else sum(max(n.memory - keep_memory, 0) for n in over)
        gpu_ids = tuple(gpus) if gpus is not None else tuple(f"{n.id[:12]}/{g}" for n in over for g in n.gpus)
        return replace(template, cpus=max(total_cpus, 0.0), memory=max(total_memory, 0), gpu_ids=gpu_ids, whole=None)

    usable = total([n for n in nodes if n.schedulable and n.id not in excluded])
    whole = total(nodes)
    if cpus is None and memory is None and gpus is None:  # given figures are not per node: only the sum is checked
        per_node = tuple(
            (
                n.hostname or n.id[:12],
                max(n.cpus - (reserve_cpus or 0.0), 0.0),
                max(n.memory - keep_memory, 0),
                len(n.gpus),
            )
            for n in nodes
        )
        whole = replace(whole, nodes=per_node)
    return replace(usable, whole=whole)
