"""Nodes and placement, the pure parts: constraint syntax, a cluster's capacity, which nodes are lost, and what the
decision does with an attempt on a lost node."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from api.errors import CannotRunHere, UnknownHost
from api.hosts import LocalHost
from controller.capacity import Capacity, cluster_capacity
from controller.constraints import node_matches, parse_constraint
from controller.containerspec import Placement, container_request
from controller.decide import Create, Remove
from controller.nodes import NodeState, NodeWatch, drained_nodes, lost_nodes, node_names, node_rows
from controller.runtime.base import NodeInfo, RuntimeUnavailable
from controller.scheduler import PendingJob, Request, schedule
from controller.spec import SpecError, parse_document

from .factories import at, container, creates, doc, exited, manifest, name_of, removes, running_job, stops

GiB = 2**30


def node(id: str, **kw) -> NodeInfo:
    base = dict(hostname=f"host-{id}", role="worker", cpus=2.0, memory=4 * GiB)
    return NodeInfo(id=id, **{**base, **kw})


# ---- constraints ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "node.labels.gpu==true",
        "node.hostname==gpu-server-1",
        "node.hostname != old-box",
        "node.role==worker",
        "node.id==2ivku8v2gvtg4",
        "engine.labels.sw3.node==n2",
        "node.platform.arch==x86_64",
    ],
)
def test_swarm_constraints_are_accepted(text):
    m = parse_document(doc(placement={"constraints": [text]}))
    assert m.spec.placement is not None and m.spec.placement.constraints == [text]


@pytest.mark.parametrize(
    "text, words",
    [
        ("node.labels.gpu=true", "exactly one operator"),
        ("node.labels.gpu", "exactly one operator"),
        ("node.labels.a==b!=c", "exactly one operator"),
        ("nodes.hostname==x", "unknown key 'nodes.hostname'"),
        ("node.ip==1.2.3.4", "unknown key"),
        ("node.role==boss", "manager or worker"),
        ("node.labels.==x", "name the label"),
        ("node.hostname==", "value must be non-empty"),
        ("node.labels.zone==a<b", "without operators"),
        ("==x", "is not a key"),
    ],
)
def test_a_malformed_constraint_is_a_clear_spec_error(text, words):
    with pytest.raises(SpecError) as err:
        parse_document(doc(placement={"constraints": [text]}), "job.yaml")
    message = str(err.value)
    assert message.startswith("job.yaml: spec.placement.constraints:") and words in message, message


def test_placement_is_not_part_of_the_generation_until_set():
    plain = manifest()
    assert manifest(placement=None).generation == plain.generation
    assert manifest(placement={"constraints": ["node.role==worker"]}).generation != plain.generation


def test_constraints_match_as_swarm_matches_them():
    n = node("abc", hostname="GPU-1", labels={"gpu": "true"}, engine_labels={"sw3.node": "n2"})
    assert node_matches(n, ["node.hostname==gpu-1", "node.labels.gpu==true", "engine.labels.sw3.node==n2"])
    assert not node_matches(n, ["node.labels.gpu==TRUE"])  # label values compare exactly
    assert node_matches(n, ["node.labels.zone!=eu"])  # a label the node lacks matches != only
    assert not node_matches(n, ["node.labels.zone==eu"])
    assert not node_matches(n, ["node.role==manager"])
    assert str(parse_constraint(" node.role == worker ")) == "node.role==worker"


def test_the_request_carries_the_specs_constraints_then_the_controllers_exclusions():
    m = manifest(placement={"constraints": ["node.labels.gpu==true"]})
    where = Placement("i", Path("/d"))
    req = container_request(m, Create(name_of(m, 1), 1), where, exclusions=("node.id!=bad",))
    assert req.placement == ("node.labels.gpu==true", "node.id!=bad")
    assert container_request(manifest(), Create("c", 1), where).placement == ()


# ---- capacity -------------------------------------------------------------------------------------------------
TEMPLATE = Capacity(cpus=1.0, memory=GiB, max_running=5, queues={"gpu": 1})


def test_cluster_capacity_is_the_sum_over_ready_active_nodes():
    nodes = [
        node("a", gpus=("GPU-0", "GPU-1")),
        node("b"),
        node("c", state="down"),
        node("d", availability="drain"),
        node("e", availability="pause"),
        node("f"),
    ]
    cap = cluster_capacity(nodes, TEMPLATE, excluded={"f"}, reserve_memory=0)
    assert (cap.cpus, cap.memory, len(cap.gpu_ids)) == (4.0, 8 * GiB, 2)
    assert (cap.max_running, dict(cap.queues)) == (5, {"gpu": 1})
    assert cap.bound.cpus == 12.0  # every node: what a job must fit to be schedulable at all
    assert cluster_capacity(nodes, TEMPLATE, cpus=3, memory="1Gi").cpus == 3.0  # given figures win


def test_a_job_bigger_than_the_ready_nodes_waits_while_a_node_is_down():
    nodes = [node("a"), node("b", state="down", cpus=4.0)]
    cap = cluster_capacity(nodes, TEMPLATE, reserve_memory=0)
    plan = schedule(cap, [], [PendingJob("big", Request(cpus=3.0)), PendingJob("huge", Request(cpus=5.0))])
    assert plan.waiting["big"].reason == "InsufficientCPU"
    assert "huge" in plan.unschedulable


def test_a_job_that_fits_the_sum_but_no_single_node_is_unschedulable():
    nodes = [node("a", hostname="small-1"), node("b", hostname="small-2", gpus=("g0",))]
    cap = cluster_capacity(nodes, TEMPLATE, reserve_memory=0)
    plan = schedule(cap, [], [PendingJob("wide", Request(cpus=3.0)), PendingJob("fits", Request(cpus=2.0, gpus=1))])
    assert "fits" in plan.admitted and "no node offers that" in plan.unschedulable["wide"]
    assert "small-1: 2 CPUs, 4Gi, 0 GPUs" in plan.unschedulable["wide"]
    given = cluster_capacity(nodes, TEMPLATE, cpus=8)  # a figure given for the whole: no per-node check
    assert "wide" in schedule(given, [], [PendingJob("wide", Request(cpus=3.0))]).admitted


# ---- lost nodes -----------------------------------------------------------------------------------------------
def test_a_down_node_is_lost_only_after_the_settle_time_and_a_drained_one_is_drained_at_once():
    nodes = [node("a", state="down", message="heartbeat failure"), node("b", availability="drain"), node("c")]
    since = {"a": at(0)}
    assert lost_nodes(nodes, since, at(29), settle=30) == {}
    lost = lost_nodes(nodes, since, at(30), settle=30)
    assert set(lost) == {"a"} and "heartbeat failure" in lost["a"]
    assert set(drained_nodes(nodes)) == {"b"} and "drained" in drained_nodes(nodes)["b"]


class ListedNodes:
    def __init__(self, *nodes: NodeInfo):
        self.listed = list(nodes)
        self.away = False

    def nodes(self) -> list[NodeInfo]:
        if self.away:
            raise RuntimeUnavailable("gone")
        return self.listed


def test_the_watch_counts_down_time_from_its_first_sight_and_forgets_it_when_back():
    runtime = ListedNodes(node("a"), node("b", state="down"))
    watch = NodeWatch(runtime, "swarm", settle=30, capacity_of=lambda ns, ex: cluster_capacity(ns, TEMPLATE, ex))  # type: ignore[arg-type]
    newly, cap = watch.refresh(at(0))
    assert (newly, watch.lost()) == (set(), {})
    assert cap is not None and cap.cpus == 2.0
    runtime.away = True
    assert watch.refresh(at(40)) == (set(), None)  # the manager did not answer: nothing changes
    runtime.away = False
    assert watch.refresh(at(41))[0] == {"b"}
    runtime.listed = [node("a"), node("b")]
    watch.refresh(at(50))
    assert watch.lost() == {} and watch.state.down_since == {}


def test_a_node_refused_by_the_probe_is_excluded_and_shown():
    probed = []

    def probe(nodes):
        probed.append([n.id for n in nodes])
        return {n.id: ("no marker" if n.id == "b" else None) for n in nodes}

    runtime = ListedNodes(node("a"), node("b"), node("c", state="down"))
    watch = NodeWatch(runtime, "swarm", probe=probe)  # type: ignore[arg-type]
    watch.refresh(at(0))
    watch.refresh(at(10))
    assert probed == [["a", "b"]]  # ready nodes, once; refused ones again after a while
    assert watch.exclusions() == ("node.id!=b",)
    watch.refresh(at(100))
    assert probed[-1] == ["b"]
    rows = {r["id"]: r for r in watch.rows([])}
    assert rows["b"]["conditions"][0]["status"] == "False" and not rows["b"]["schedulable"]
    assert rows["c"]["conditions"][0]["status"] == "Unknown"
    runtime.listed = [node("a", state="down"), node("b"), node("c")]
    watch.refresh(at(110))
    assert probed[-1] == ["c"]  # a node seen for the first time
    runtime.listed = [node("a"), node("b"), node("c")]
    watch.refresh(at(120))
    assert probed[-1] == ["a"]  # back from being down: its mounts may have changed


def test_shared_host_names_get_the_node_id():
    names = node_names([node("n1", hostname="vm"), node("n2", hostname="vm"), node("n3", hostname="gpu")])
    assert names == {"n1": "vm-n1", "n2": "vm-n2", "n3": "gpu"}


def test_rows_list_the_jobs_running_on_each_node():
    m = manifest()
    c = dataclasses.replace(container(m), node="b")
    rows = node_rows(NodeState(nodes=[node("a"), node("b")]), [c], "swarm")
    assert [r["jobs"] for r in rows] == [[], ["job"]]
    one = node_rows(NodeState(nodes=[node("local")]), [container(m)], "docker")  # a single engine: no node ids
    assert one[0]["jobs"] == ["job"] and one[0]["conditions"] == []


# ---- the decision ---------------------------------------------------------------------------------------------
M = manifest()


def on(c, node_id="n2"):
    return dataclasses.replace(c, node=node_id)


def test_an_attempt_on_a_lost_node_is_interrupted_removed_and_run_again():
    job, c = running_job(M)
    job.step(on(c), now=at(10))
    d = job.step(on(c), now=at(60), lost_nodes={"n2": "node vm (n2) has been down since ..."})
    h = d.status.history[-1]
    assert (h.outcome, h.reason, h.counted, d.status.failures) == ("Interrupted", "NodeLost", False, 0)
    assert removes(d) == [Remove(c.name)] and creates(d) == [Create(name_of(M, 2), 2)]
    assert d.actions.index(Remove(c.name)) < d.actions.index(creates(d)[0])
    assert "NodeLost" in [e.reason for e in d.events]


def test_an_attempt_on_a_node_not_lost_keeps_running():
    job, c = running_job(M)
    d = job.step(on(c), now=at(60), lost_nodes={"n3": "other"})
    assert (d.status.phase, d.actions) == ("Running", [])


def test_interruption_policy_fail_fails_the_job_and_still_removes_the_task():
    m = manifest(interruptionPolicy="Fail")
    job, c = running_job(m)
    d = job.step(on(c), now=at(60), lost_nodes={"n2": "gone"})
    assert (d.status.phase, d.status.reason, removes(d), creates(d)) == ("Failed", "Interrupted", [Remove(c.name)], [])


def test_the_lost_task_still_listed_is_removed_again_and_never_taken_for_running():
    job, c = running_job(M)
    job.step(on(c), now=at(60), lost_nodes={"n2": "gone"})  # attempt 2 asked for
    new = on(container(M, 2, started=at(61)), "n3")
    d = job.step(on(c), new, now=at(62), lost_nodes={"n2": "gone"})  # the removal of attempt 1 has not got through
    assert removes(d) == [Remove(c.name)] and d.status.attempts == 2 and d.status.containerName == new.name
    assert d.status.phase == "Running" and creates(d) == []


def test_the_lost_task_waiting_for_capacity_is_not_running():
    from controller.decide import Observed, propose
    from controller.scheduler import Admission

    from .factories import desired_for, facts

    job, c = running_job(M)
    lost = {"n2": "gone"}
    first = propose(desired_for(M), Observed(containers=(on(c),)), job.status, facts(at(60), lost_nodes=lost))
    d = first.admit(Admission("Waiting", "InsufficientCPU", "full", 1, 1))
    assert removes(d) == [Remove(c.name)] and (d.status.phase, d.status.reason) == ("Pending", "InsufficientCPU")
    again = propose(desired_for(M), Observed(containers=(on(c),)), d.status, facts(at(61), lost_nodes=lost))
    d2 = again.admit(Admission("Waiting", "InsufficientCPU", "full", 1, 1))
    assert removes(d2) == [Remove(c.name)] and d2.status.phase == "Pending"


def test_an_attempt_on_a_drained_node_is_stopped_then_recorded_as_interrupted_and_run_again():
    job, c = running_job(M)
    drained = {"n2": "node vm (n2) was drained"}
    d = job.step(on(c), now=at(60), drained_nodes=drained)
    assert [s.container for s in stops(d)] == [c.name] and creates(d) == []  # the node answers: it stops first
    assert d.status.stopping.reason == "NodeDrained" and "NodeDrained" in [e.reason for e in d.events]
    d = job.step(on(c), now=at(61), drained_nodes=drained)
    assert [s.container for s in stops(d)] == [c.name] and "NodeDrained" not in [e.reason for e in d.events]
    d = job.step(on(exited(M, 1, 143, finished=at(62))), now=at(63), drained_nodes=drained)
    h = d.status.history[-1]
    assert (h.outcome, h.reason, h.counted, d.status.failures) == ("Interrupted", "NodeDrained", False, 0)
    assert creates(d) == [Create(name_of(M, 2), 2)]


def test_an_attempt_orphaned_with_its_removed_node_is_interrupted_without_waiting_for_its_log():
    job, c = running_job(M)
    orphan = dataclasses.replace(on(c), state="dead", exit_code=None, finished_at=at(50))
    d = job.step(orphan, now=at(60), undrained=(c.name,))
    h = d.status.history[-1]
    assert (h.outcome, h.reason, d.status.failures) == ("Interrupted", "NodeLost", 0)
    assert removes(d) == [Remove(c.name)] and creates(d) == [Create(name_of(M, 2), 2)]


def test_a_dead_container_of_a_single_engine_is_still_judged_by_its_exit():
    job, c = running_job(M)
    dead = dataclasses.replace(c, state="dead", exit_code=1, finished_at=at(50))
    d = job.step(dead, now=at(60))
    assert (d.status.history[-1].outcome, d.status.history[-1].reason) == ("Failed", "Error")


def test_the_down_time_counts_from_the_engines_record_when_the_controller_starts_late():
    runtime = ListedNodes(node("a", state="down", changed_at=at(0)))
    watch = NodeWatch(runtime, "swarm", settle=30)  # type: ignore[arg-type]
    assert watch.refresh(at(100))[0] == {"a"}  # down since at(0) by Swarm's record: lost at once


# ---- target_host ----------------------------------------------------------------------------------------------
def swarm_host(*rows: dict) -> LocalHost:
    return LocalHost(name="mgr", online=True, last_seen=0.0, runtime="swarm", nodes=rows)


ROWS = (
    {"id": "aaaaaaaaaaaa1", "name": "vm-aaaaaaaaaaaa", "hostname": "vm", "state": "ready", "gpus": []},
    {"id": "bbbbbbbbbbbb2", "name": "vm-bbbbbbbbbbbb", "hostname": "vm", "state": "ready", "gpus": ["g0", "g1"]},
    {"id": "cccccccccccc3", "name": "gpu-box", "hostname": "gpu-box", "state": "ready", "gpus": ["g0"]},
)


def test_target_host_on_swarm_becomes_a_placement_constraint():
    host = swarm_host(*ROWS)
    assert host.check_target("gpu-box") == "gpu-box" and host.placement_for("gpu-box") == ["node.hostname==gpu-box"]
    assert host.check_target("vm-bbbbbbbbbbbb") == "vm-bbbbbbbbbbbb"
    assert host.placement_for("vm-bbbbbbbbbbbb") == ["node.id==bbbbbbbbbbbb2"]  # host name shared: by id
    assert host.check_target("auto") is None and host.placement_for(None) == []
    assert len(host.gpus_for_target(None)) == 2 and host.gpus_for_target("gpu-box") == ("g0",)
    with pytest.raises(UnknownHost, match="vm-aaaaaaaaaaaa"):
        host.check_target("vm")  # ambiguous
    with pytest.raises(CannotRunHere, match="Swarm nodes"):
        host.check_target("deucalion")


def test_target_host_on_a_single_engine_must_name_this_machine():
    host = LocalHost(name="lab-vm", online=True, last_seen=0.0)
    assert host.check_target("lab-vm") == "lab-vm" and host.placement_for("lab-vm") == []
    with pytest.raises(UnknownHost):
        host.check_target("gpu-box")


def test_settle_default_is_thirty_seconds():
    from controller.settings import Settings

    assert Settings.from_mapping({}).node_settle == 30.0
    assert timedelta(seconds=Settings.from_mapping({"OPEVA_NODE_SETTLE": "5"}).node_settle).total_seconds() == 5
