"""Build a controller from `Settings`: the one place that knows which part needs which."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .actions import Actions
from .capacity import Capacity, cluster_capacity, machine_capacity
from .capacityglue import CapacityGlue
from .containercache import ContainerCache
from .containerspec import EMPTY_DIR, GUARDED, STATE_DIR, Placement
from .decide import Facts
from .hooks import AttemptHooks, NoHooks
from .hostfacts import HostFacts
from .jobpaths import JOBS_DIR
from .jobsecrets import SECRETS_DIR, SecretsFolder
from .logcapture import LogCapture
from .loop import Controller
from .nodes import NodeWatch
from .reconciler import Reconciler
from .recording import Recorder
from .runtime.base import Runtime
from .sampler import Sampler
from .scheduler import Scheduler
from .settings import Settings, SettingsError, env_name
from .specsource import SETTLE_SECONDS, SpecSource
from .status import utcnow
from .statuscache import StatusCache
from .store import DataStore, ensure_dirs
from .workqueue import WorkQueue


def build_controller(
    settings: Settings,
    runtime: Runtime,
    hooks: AttemptHooks | None = None,
    provenance: Callable[[str], dict[str, str] | None] | None = None,
) -> Controller:
    """`provenance`: where the specs folder's files come from (the git source's), recorded with each run."""
    hooks = hooks or NoHooks()
    store = DataStore.open(settings.data_dir, settings.specs_dir)
    queue = WorkQueue()
    cache = ContainerCache()
    # a git tree's files are whole before the folder flips to them: no settling time for broken ones
    specs = SpecSource(store.specs_dir, store.root, provenance, settle=0.0 if settings.git_url else SETTLE_SECONDS)
    logs = LogCapture(store, runtime, on_complete=queue.add, on_retry=queue.add_after)
    machine = machine_capacity(
        cpus=settings.cpus,
        memory=settings.memory,
        gpus=settings.gpus,
        reserve_cpus=settings.reserve_cpus,
        reserve_memory=settings.reserve_memory,
        max_running=settings.max_running,
        queues=settings.queues,
    )
    scheduler = Scheduler(machine)
    instance = store.instance_id()
    nodes = build_nodes(settings, runtime, machine, store)
    # what a settled job's decision depends on besides its files: an index made under other settings is not used
    context = {
        "instance": instance,
        "keep_finished_containers": settings.keep_finished_containers,
        "ttl_succeeded": settings.ttl_succeeded,
        "ttl_failed": settings.ttl_failed,
    }
    statuses = StatusCache(store, context)
    host = HostFacts.of_this_host()
    recorder = Recorder(store, statuses, hooks)
    capacity = CapacityGlue(scheduler, cache, specs, queue.add_after)
    secrets = SecretsFolder(settings.secrets_dir or store.root / SECRETS_DIR)
    secrets.ensure()
    hidden, shown_specs = job_view(store, secrets.path)
    actions = Actions(
        store=store,
        runtime=runtime,
        cache=cache,
        logs=logs,
        statuses=statuses,
        recorder=recorder,
        hooks=hooks,
        secrets=secrets,
        placement=Placement(
            instance,
            Path(settings.host_data_dir or store.root),
            settings.default_network,
            guarded_paths(store),
            hidden=hidden,
            specs=shown_specs,
            job_user=settings.job_user,
            networks_allowed=settings.networks_allowed,
            allow_host_network=settings.allow_host_network,
        ),
        artifacts=settings.artifacts,
        archive_retention_days=settings.archive_retention_days,
        enqueue_after=queue.add_after,
        capacity=capacity,
        exclusions=nodes.exclusions,
    )
    reconciler = Reconciler(
        store=store,
        runtime=runtime,
        specs=specs,
        cache=cache,
        logs=logs,
        statuses=statuses,
        host=host,
        policy=Facts(
            now=utcnow(),  # replaced at each reconcile
            instance=instance,
            keep_finished_containers=settings.keep_finished_containers,
            ttl_succeeded=settings.ttl_succeeded,
            ttl_failed=settings.ttl_failed,
        ),
        recorder=recorder,
        actions=actions,
        capacity=capacity,
        nodes=nodes,
    )
    return Controller(
        settings=settings,
        store=store,
        runtime=runtime,
        queue=queue,
        cache=cache,
        specs=specs,
        logs=logs,
        hooks=hooks,
        scheduler=scheduler,
        statuses=statuses,
        host=host,
        reconciler=reconciler,
        capacity=capacity,
        sampler=Sampler(store, runtime, lambda: list(statuses.live().values()), on_sample=hooks.resource_sample),
        nodes=nodes,
    )


def build_nodes(settings: Settings, runtime: Runtime, machine: Capacity, store: DataStore) -> NodeWatch:
    """The nodes as the controller follows them. On a single engine the capacity stays this machine's, detected
    once; on Swarm it is the sum over the usable nodes, with the given figures winning as on one machine, and every
    node is checked for the data folder."""
    kind = settings.runtime
    make_probe = getattr(runtime, "data_probe", None)
    if kind != "swarm" or make_probe is None:
        return NodeWatch(runtime, kind, settings.node_settle)

    def capacity_of(listed, excluded) -> Capacity:
        return cluster_capacity(
            listed,
            machine,
            excluded,
            cpus=settings.cpus,
            memory=settings.memory,
            gpus=settings.gpus,
            reserve_cpus=settings.reserve_cpus,
            reserve_memory=settings.reserve_memory,
        )

    probe = make_probe(store.root, Path(settings.host_data_dir or store.root), settings.probe_image)
    return NodeWatch(runtime, kind, settings.node_settle, capacity_of, probe)


def build_runtime(settings: Settings, instance: str) -> Runtime:
    """The engine jobs run on: this Docker engine, or a Swarm through its manager (`--runtime swarm`)."""
    if settings.runtime == "swarm":
        from .runtime.swarm import SwarmRuntime

        return SwarmRuntime(
            settings.swarm_host or settings.docker_url, instance=instance, gpu_kind=settings.gpu_resource
        )
    from .runtime.docker import DockerRuntime

    return DockerRuntime(settings.docker_url, instance=instance)


def guarded_paths(store: DataStore) -> tuple[str, ...]:
    """What stays read-only when a job gets the shared folder writable (spec.sharedData: ReadWrite): made to exist
    now, as a bind mount needs its source."""
    guarded = list(GUARDED)
    for d in guarded:
        (store.root / d).mkdir(exist_ok=True)
    try:
        specs = store.specs_dir.resolve().relative_to(store.root.resolve()).as_posix()
    except ValueError:
        specs = None  # outside the data folder: not mounted at all
    if specs and specs != ".":
        guarded.append(specs)
    if (store.root / "job_track.json").is_file():
        guarded.append("job_track.json")
    return tuple(guarded)


RESERVED_TOP = (STATE_DIR, JOBS_DIR, "archive", "configs", "datasets")  # served by the API or read by the jobs


def job_view(store: DataStore, secrets: Path) -> tuple[tuple[str, ...], str | None]:
    """What no job sees of the data folder (the controller's state, the secrets folder when it lies inside), and the
    specs folder when it is a folder of the data folder a spec may show (spec.mountSpecs). SettingsError for a
    secrets folder a job or the API could reach."""
    root, specs_dir, secrets_dir = store.root.resolve(), store.specs_dir.resolve(), secrets.resolve()
    where = f"{env_name(Settings, 'secrets_dir')}={secrets}"
    if secrets_dir.is_relative_to(specs_dir) or specs_dir.is_relative_to(secrets_dir):
        raise SettingsError(f"{where}: the secrets folder and the specs folder must not contain each other")
    ensure_dirs(store.root, store.root / EMPTY_DIR)  # mounted over what a job must not see
    hidden = [STATE_DIR]
    if secrets_dir.is_relative_to(root):
        rel = secrets_dir.relative_to(root).parts
        if rel[:1] != (STATE_DIR,):
            if len(rel) != 1 or rel[0] in RESERVED_TOP:
                raise SettingsError(
                    f"{where}: inside the data folder, the secrets folder must be a folder of its own at its top "
                    f"(like DATA/{SECRETS_DIR}), not the data folder or one of {', '.join(RESERVED_TOP)}"
                )
            hidden.append(rel[0])
    specs = specs_dir.relative_to(root).parts if specs_dir.is_relative_to(root) else ()
    shown = "/".join(specs) if specs and specs[0] != STATE_DIR else None  # a git checkout stays under .opeva
    return tuple(hidden), shown
