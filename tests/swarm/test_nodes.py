"""The node-level half of the Swarm runtime, against the real 3-node swarm: placement by node label and by host
(target_host), the node list (/nodes, /hosts, `opeva get nodes`), the data-folder probe, a worker whose daemon is
killed mid-job and a drained worker (the job runs again elsewhere, recorded as interrupted, never two live tasks).

Every job is a service on the swarm; which node runs it is read from the manager's tasks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from e2e.harness import (
    ControllerProcess,
    free_port,
    job_name,
    read_events,
    read_log,
    read_status,
    shell_spec,
    wait_for,
    wait_phase,
    write_spec,
)

from .cluster import NODE_LABEL, SwarmCluster

pytestmark = pytest.mark.swarm

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = SwarmCluster().images[0]  # the image every node of the harness holds
SETTLE = 3  # seconds a node may be down before its attempt is given up (the default is 30)


class Swarm:
    """The manager's view: which node runs a job, and how many of its tasks run."""

    def __init__(self, cluster: SwarmCluster):
        self.cluster = cluster
        self.api = docker.APIClient(base_url=cluster.manager_url, timeout=30)
        self.names = {n.node_id: n.name for n in cluster.nodes}

    def running_tasks(self, job: str) -> list[dict]:
        services = self.api.services(filters={"label": f"opeva.job={job}"})
        if not services:
            return []
        tasks = self.api.tasks(filters={"service": [s["ID"] for s in services]})
        return [t for t in tasks if t["Status"]["State"] == "running"]

    def node_of(self, job: str) -> str | None:
        running = self.running_tasks(job)
        return self.names.get(running[0]["NodeID"]) if len(running) == 1 else None

    def live_containers(self, job: str) -> dict[str, int]:
        """Running containers of the job on each daemon that answers (a killed daemon's is not asked)."""
        out = {}
        for node in self.cluster.nodes:
            done = self.cluster.docker(
                node.name, "ps", "-q", "--filter", f"label=opeva.job={job}", check=False, timeout=20
            )
            if done.returncode == 0:
                out[node.name] = len(done.stdout.split())
        return out

    def set_availability(self, name: str, availability: str) -> None:
        node_id = self.cluster.node(name).node_id
        spec = self.api.inspect_node(node_id)
        self.api.update_node(node_id, spec["Version"]["Index"], {**spec["Spec"], "Availability": availability})


class TaskWatch:
    """Counts the job's running tasks every 0.1 s while a test runs: the most ever seen at once."""

    def __init__(self, swarm: Swarm, job: str):
        self.swarm, self.job = swarm, job
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.most = max(self.most, len(self.swarm.running_tasks(self.job)))
            except Exception:
                pass  # the manager was busy; the next look counts

    def __enter__(self) -> TaskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def swarm(swarm_cluster: SwarmCluster) -> Swarm:
    return Swarm(swarm_cluster)


def controller(cluster: SwarmCluster, data: Path, **env: str) -> ControllerProcess:
    base = {
        "DOCKER_HOST": cluster.manager_url,
        "OPEVA_RUNTIME": "swarm",
        "OPEVA_NODE_SETTLE": str(SETTLE),
        "OPEVA_PROBE_IMAGE": BUSYBOX,
    }
    return ControllerProcess(data, resync=1.0, port=free_port(), env={**base, **env}).start(timeout=60)


@pytest.fixture(scope="module")
def ctl(swarm_cluster: SwarmCluster, tmp_path_factory) -> Iterator[ControllerProcess]:
    data = tmp_path_factory.mktemp("swarm-nodes") / "data"
    (data / "specs").mkdir(parents=True)
    proc = controller(swarm_cluster, data)
    try:
        yield proc
    finally:
        proc.stop()


def get(ctl: ControllerProcess, path: str) -> dict:
    return httpx.get(f"{ctl.url}{path}", timeout=10).json()


def job(base: str, script: str, **spec) -> dict:
    spec.setdefault("terminationGracePeriodSeconds", 1)
    return shell_spec(job_name(base), script, image=BUSYBOX, **spec)


def history(data: Path, name: str) -> list[tuple[str, str]]:
    return [(h["outcome"], h["reason"]) for h in (read_status(data, name) or {}).get("history", [])]


def delete(ctl: ControllerProcess, swarm: Swarm, name: str) -> None:
    (ctl.data / "specs" / f"{name}.yaml").unlink(missing_ok=True)
    wait_for(lambda: not swarm.running_tasks(name), timeout=60, what=f"{name}'s tasks gone")


# ---- the node list --------------------------------------------------------------------------------------------
def test_nodes_are_listed_with_labels_resources_data_folder_and_jobs(ctl: ControllerProcess, swarm: Swarm):
    items = wait_for(lambda: (n := get(ctl, "/nodes")["items"]) and len(n) == 3 and n, what="three nodes")
    assert get(ctl, "/nodes")["runtime"] == "swarm"
    by_label = {n["labels"][NODE_LABEL]: n for n in items}
    assert set(by_label) == {"n1", "n2", "n3"}
    assert [by_label[k]["role"] for k in ("n1", "n2", "n3")] == ["manager", "worker", "worker"]
    for n in items:
        assert (n["state"], n["availability"], n["online"], n["schedulable"]) == ("ready", "active", True, True)
        assert n["cpus"] > 0 and n["memory"] > 0
        assert n["conditions"] == [{"type": "DataFolder", "status": "True", "message": "sees the data folder"}]
    hosts = get(ctl, "/hosts")
    assert sorted(hosts["available_hosts"]) == sorted(n["name"] for n in items)
    assert {h["info"]["labels"][NODE_LABEL] for h in hosts["hosts"].values()} == {"n1", "n2", "n3"}
    table = subprocess.run(
        [sys.executable, "-m", "cli.main", "get", "nodes", "-o", "wide"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"OPEVA_SERVER": ctl.url, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["NAME", "ROLE", "STATE", "AVAILABILITY"] and len(lines) == 4
    assert all(" ok " in line for line in lines[1:]), table.stdout  # the DATA FOLDER column
    summary = json.loads((ctl.data / ".opeva" / "heartbeat.json").read_text())["capacity"]["capacity"]
    assert summary["cpus"] == sum(n["cpus"] for n in items) and summary["memory"] > 0  # the sum over the nodes


# ---- placement ------------------------------------------------------------------------------------------------
def test_a_job_placed_by_node_label_runs_there_and_is_listed_on_its_node(ctl: ControllerProcess, swarm: Swarm):
    doc = job("on-n3", "sleep 300", placement={"constraints": [f"node.labels.{NODE_LABEL}==n3"]})
    name = doc["metadata"]["name"]
    write_spec(ctl.data, doc)
    wait_phase(ctl.data, name, "Running", timeout=60)
    assert wait_for(lambda: swarm.node_of(name), what="its task") == "n3"
    rows = wait_for(
        lambda: [n for n in get(ctl, "/nodes")["items"] if name in n["jobs"]], timeout=20, what="the job on its node"
    )
    assert [n["labels"][NODE_LABEL] for n in rows] == ["n3"]
    host = next(h for h in get(ctl, "/hosts")["hosts"].values() if h["info"]["labels"][NODE_LABEL] == "n3")
    assert host["active_job_ids"] == [name] and host["running"] == 1
    delete(ctl, swarm, name)


def test_target_host_puts_a_submission_on_that_node(ctl: ControllerProcess, swarm: Swarm):
    (ctl.data / "configs").mkdir(exist_ok=True)
    (ctl.data / "configs" / "nodes.yaml").write_text("metadata: {experiment_name: nodes}\n")
    n2 = next(n for n in get(ctl, "/nodes")["items"] if n["labels"][NODE_LABEL] == "n2")
    unknown = httpx.post(f"{ctl.url}/run-simulation", json={"config_path": "nodes.yaml", "target_host": "nowhere"})
    assert unknown.status_code == 400 and n2["name"] in unknown.json()["detail"]
    sent = httpx.post(
        f"{ctl.url}/run-simulation",
        json={"config_path": "nodes.yaml", "target_host": n2["name"], "image": BUSYBOX, "job_name": job_name("th")},
    )
    assert sent.status_code in (200, 201, 202), sent.text
    name = sent.json()["job_id"]
    spec = get(ctl, f"/jobs/{name}")["spec"]
    # every node is called "vm" here, so the node is named by its id
    assert spec["placement"] == {"constraints": [f"node.id=={n2['id']}"]}
    wait_phase(ctl.data, name, "Failed", "Succeeded", timeout=60)  # placed and run (busybox has no simulator)
    assert read_status(ctl.data, name)["reason"] != "Unschedulable"


# ---- a worker lost mid-job ------------------------------------------------------------------------------------
def test_a_worker_killed_mid_job_reruns_it_elsewhere_as_interrupted_never_twice(
    ctl: ControllerProcess, swarm: Swarm, swarm_cluster: SwarmCluster
):
    doc = job("lost", "sleep 300", placement={"constraints": ["node.role==worker"]})
    name = doc["metadata"]["name"]
    write_spec(ctl.data, doc)
    wait_phase(ctl.data, name, "Running", timeout=60)
    first = wait_for(lambda: swarm.node_of(name), what="its task")
    other = "n3" if first == "n2" else "n2"
    try:
        with TaskWatch(swarm, name) as watch:
            swarm_cluster.kill_node(first)
            st = wait_for(
                lambda: (s := read_status(ctl.data, name)) and s["attempts"] == 2 and s["phase"] == "Running" and s,
                timeout=60,
                what="attempt 2 running",
            )
            assert wait_for(lambda: swarm.node_of(name), what="the new task") == other
            assert ("Interrupted", "NodeLost") in history(ctl.data, name)
            assert (st["failures"], st["history"][-1]["counted"]) == (0, False)
            lost = wait_for(  # the heartbeat carries the nodes to the API every 5 s
                lambda: [n for n in get(ctl, "/nodes")["items"] if n["labels"][NODE_LABEL] == first and n["lost"]],
                timeout=20,
                what="the node shown lost",
            )[0]
            assert lost["state"] == "down" and not lost["online"] and "down since" in lost["lost"]
            swarm_cluster.restart_node(first)  # comes back: the old task must not run there again
            wait_for(lambda: swarm_cluster.node_states().get(first) == "Ready", timeout=60, what=f"{first} Ready")
            wait_for(lambda: swarm.live_containers(name).get(first) == 0, timeout=60, what="no task left on it")
            time.sleep(2)
        assert watch.most == 1, f"{watch.most} tasks of {name} ran at once"
        assert swarm.live_containers(name) == {"n1": 0, first: 0, other: 1}
        assert read_status(ctl.data, name)["attempts"] == 2
    finally:
        swarm_cluster.restart_node(first) if swarm_cluster.node_states().get(first) != "Ready" else None
        delete(ctl, swarm, name)


def test_a_drained_worker_gives_its_job_back_recorded_as_interrupted(
    ctl: ControllerProcess, swarm: Swarm, swarm_cluster: SwarmCluster
):
    doc = job("drain", "trap 'exit 143' TERM; sleep 300 & wait", placement={"constraints": ["node.role==worker"]})
    name = doc["metadata"]["name"]
    write_spec(ctl.data, doc)
    wait_phase(ctl.data, name, "Running", timeout=60)
    first = wait_for(lambda: swarm.node_of(name), what="its task")
    other = "n3" if first == "n2" else "n2"
    try:
        with TaskWatch(swarm, name) as watch:
            swarm.set_availability(first, "drain")
            wait_for(
                lambda: (s := read_status(ctl.data, name)) and s["attempts"] == 2 and s["phase"] == "Running",
                timeout=60,
                what="attempt 2 running",
            )
            assert wait_for(lambda: swarm.node_of(name), what="the new task") == other
        assert watch.most == 1, f"{watch.most} tasks of {name} ran at once"
        st = read_status(ctl.data, name)
        assert ("Interrupted", "NodeDrained") in history(ctl.data, name) and st["failures"] == 0
        drained = wait_for(
            lambda: [n for n in get(ctl, "/nodes")["items"] if n["labels"][NODE_LABEL] == first and n["lost"]],
            timeout=20,
            what="the node shown drained",
        )[0]
        assert drained["availability"] == "drain" and not drained["schedulable"]
        assert drained["name"] not in get(ctl, "/hosts")["available_hosts"]
    finally:
        swarm.set_availability(first, "active")
        delete(ctl, swarm, name)


# ---- GPUs ---------------------------------------------------------------------------------------------------
def test_gpus_are_generic_resources_and_a_gpu_job_goes_where_they_are(
    ctl: ControllerProcess, swarm: Swarm, swarm_cluster: SwarmCluster
):
    """n3 advertises one (made-up) GPU as a generic resource: it counts in the capacity, a 1-GPU job is placed
    there and handed its id by Swarm, and a 2-GPU job can never fit."""
    one = job("gpu", "true")
    swarm_cluster.extra_flags["n3"] = ("--node-generic-resource", "NVIDIA-GPU=GPU-fake-0")
    swarm_cluster.restart_node("n3")
    try:
        wait_for(
            lambda: [n for n in get(ctl, "/nodes")["items"] if n["gpus"] == ["GPU-fake-0"] and n["state"] == "ready"],
            timeout=60,
            what="n3 advertising its GPU",
        )
        # the variable's name has a '-', which a shell drops from its own environment: read what it was given
        one = job("gpu", r"tr '\0' '\n' < /proc/$$/environ | grep DOCKER_RESOURCE; sleep 300", resources={"gpus": 1})
        two = job("gpus", "true", resources={"gpus": 2})
        write_spec(ctl.data, one)
        write_spec(ctl.data, two)
        name = one["metadata"]["name"]
        wait_phase(ctl.data, name, "Running", timeout=60)
        assert wait_for(lambda: swarm.node_of(name), what="its task") == "n3"
        handed = "DOCKER_RESOURCE_NVIDIA-GPU=GPU-fake-0"  # Swarm's assignment, which the NVIDIA runtime reads
        wait_for(lambda: handed in read_log(ctl.data, name), timeout=30, what=f"{handed} in its output")
        st = wait_phase(ctl.data, two["metadata"]["name"], "Failed", timeout=30)
        assert st["reason"] == "Unschedulable" and "2 GPUs requested" in st["message"]
    finally:
        delete(ctl, swarm, one["metadata"]["name"])
        swarm_cluster.extra_flags.pop("n3", None)
        swarm_cluster.restart_node("n3")
        wait_for(lambda: swarm_cluster.node_states().get("n3") == "Ready", timeout=60, what="n3 Ready")


# ---- the data folder ------------------------------------------------------------------------------------------
def test_nodes_that_do_not_see_the_data_folder_are_refused_visibly(swarm_cluster: SwarmCluster, tmp_path: Path):
    """The controller is told its folder is elsewhere on the hosts (a decoy folder every node does see): no node
    finds its marker there, so every node is refused, says why, and no job is placed."""
    decoy = tmp_path / "decoy"
    (decoy / ".opeva" / "probe").mkdir(parents=True)
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    proc = controller(swarm_cluster, data, OPEVA_HOST_DATA=str(decoy), OPEVA_SKIP_HOSTPATH_CHECK="1")
    try:
        items = wait_for(lambda: (n := get(proc, "/nodes")["items"]) and len(n) == 3 and n, what="three nodes")
        for n in items:
            (cond,) = n["conditions"]
            assert (cond["type"], cond["status"]) == ("DataFolder", "False") and "another folder" in cond["message"]
            assert not n["schedulable"]
        assert get(proc, "/hosts")["available_hosts"] == []
        assert "node_data_folder_missing" in proc.output()
        doc = job("refused", "true")
        write_spec(data, doc)
        st = wait_phase(data, doc["metadata"]["name"], "Pending", timeout=30, reason="Unschedulable")
        assert "no suitable node" in st["message"]
    finally:
        proc.stop()


def hide(folder: Path) -> tuple[str, ...]:
    """A wrapper that runs a node's daemon where `folder` is an empty tmpfs: a machine whose shared mount is missing."""
    script = 'mount -t tmpfs none "$1" && shift && exec "$@"'
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(folder))


def bounce(ctl: ControllerProcess, cluster: SwarmCluster, name: str, wrapper: tuple[str, ...] | None) -> None:
    """The node goes down (its daemon killed) until the controller has seen it down, then comes back (under
    `wrapper`): a reboot."""
    cluster.kill_node(name)
    wait_for(
        lambda: [n for n in get(ctl, "/nodes")["items"] if n["labels"][NODE_LABEL] == name and n["state"] == "down"],
        timeout=30,
        what=f"{name} seen down",
    )
    if wrapper:
        cluster.wrappers[name] = wrapper
    else:
        cluster.wrappers.pop(name, None)
    cluster.restart_node(name)


def data_folder(ctl: ControllerProcess, name: str, status: str) -> dict | None:
    for n in get(ctl, "/nodes")["items"]:
        if n["labels"][NODE_LABEL] == name and n["state"] == "ready" and n["conditions"][0]["status"] == status:
            return n
    return None


def test_a_node_back_without_the_data_folder_is_refused_and_jobs_go_elsewhere(
    ctl: ControllerProcess, swarm: Swarm, swarm_cluster: SwarmCluster
):
    pinned = job("pinned-n3", "true", placement={"constraints": [f"node.labels.{NODE_LABEL}==n3"]})
    free = job("anywhere", "sleep 1", placement={"constraints": ["node.role==worker"]})
    bounce(ctl, swarm_cluster, "n3", hide(ctl.data))
    try:
        n3 = wait_for(lambda: data_folder(ctl, "n3", "False"), timeout=60, what="n3 refused")
        assert "bind source path does not exist" in n3["conditions"][0]["message"] and not n3["schedulable"]
        assert n3["name"] not in get(ctl, "/hosts")["available_hosts"]
        assert "node_data_folder_missing" in ctl.output()
        write_spec(ctl.data, pinned)
        write_spec(ctl.data, free)
        wait_phase(ctl.data, free["metadata"]["name"], "Succeeded", timeout=60)
        st = wait_phase(ctl.data, pinned["metadata"]["name"], "Pending", timeout=30, reason="Unschedulable")
        service = swarm.api.inspect_service(st["containerName"])  # every job is kept off the refused node
        assert f"node.id!={n3['id']}" in service["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    finally:
        (ctl.data / "specs" / f"{pinned['metadata']['name']}.yaml").unlink(missing_ok=True)
        bounce(ctl, swarm_cluster, "n3", None)
    wait_for(lambda: data_folder(ctl, "n3", "True"), timeout=60, what="n3 checked again and accepted")


# ---- a node removed from the swarm (long: it must rejoin afterwards) ---------------------------------------------
def rejoin(cluster: SwarmCluster, name: str) -> None:
    """A node removed with `docker node rm` stays out when its daemon restarts: it leaves and joins again, with a new
    node id and its label."""
    node = cluster.node(name)
    cluster.restart_node(name)
    cluster.docker(name, "swarm", "leave", "--force")
    token = cluster.docker(1, "swarm", "join-token", "-q", "worker").stdout.decode().strip()
    own = f"127.0.0.1:{node.port}"
    cluster.docker(name, "swarm", "join", "--token", token, "--listen-addr", own, "--advertise-addr", own,
                   f"127.0.0.1:{cluster.manager.port}")  # fmt: skip
    node.node_id = cluster.docker(name, "info", "-f", "{{.Swarm.NodeID}}").stdout.decode().strip()
    cluster.docker(1, "node", "update", "--label-add", f"{NODE_LABEL}={name}", node.node_id)
    wait_for(lambda: cluster.node_states().get(name) == "Ready", timeout=60, what=f"{name} back in the swarm")


@pytest.mark.long
def test_a_worker_removed_from_the_swarm_mid_job_is_an_interruption(
    swarm: Swarm, swarm_cluster: SwarmCluster, tmp_path: Path
):
    """The operator removes a dead node before the settle time is up (`docker node rm --force`): Swarm marks its task
    orphaned, without an exit code or a log; the attempt is interrupted, not failed, and runs elsewhere."""
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    proc = controller(swarm_cluster, data, OPEVA_NODE_SETTLE="600")
    doc = job("removed", "sleep 300", placement={"constraints": ["node.role==worker"]})
    name = doc["metadata"]["name"]
    first = ""
    try:
        write_spec(data, doc)
        wait_phase(data, name, "Running", timeout=60)
        first = wait_for(lambda: swarm.node_of(name), what="its task")
        with TaskWatch(swarm, name) as watch:
            swarm_cluster.kill_node(first)
            wait_for(lambda: swarm_cluster.node_states().get(first) == "Down", timeout=30, what=f"{first} Down")
            swarm_cluster.docker(1, "node", "rm", "--force", swarm_cluster.node(first).node_id)
            st = wait_for(
                lambda: (s := read_status(data, name)) and s["attempts"] == 2 and s["phase"] == "Running" and s,
                timeout=60,
                what="attempt 2 running",
            )
        assert watch.most == 1
        assert ("Interrupted", "NodeLost") in history(data, name) and st["failures"] == 0
        lost = [e["message"] for e in read_events(data, name) if e["reason"] == "NodeLost"]
        assert len(lost) == 1 and "left the swarm" in lost[0]
    finally:
        (data / "specs" / f"{name}.yaml").unlink(missing_ok=True)
        proc.stop()
        if first:
            rejoin(swarm_cluster, first)
