"""Interruptions: an attempt ended by the machine (reboot, engine restart or outage, container removed behind our
back) is not the job's failure; it runs again as a new attempt unless interruptionPolicy says Fail."""

from __future__ import annotations

from ..policy import interruption_cause
from ..runtime.base import ContainerInfo
from ..spec import JobManifest
from . import stopping
from .core import Draft, Remove, current_attempt, is_live

SIGNAL_SETTLE = 20.0  # seconds a signal death waits before it is taken for the job's own failure


def cause(d: Draft, c: ContainerInfo) -> str | None:
    return interruption_cause(c, d.facts.boot_time, d.facts.daemon_started_at, d.facts.outages)


def signal_settle_left(d: Draft, c: ContainerInfo) -> float:
    """Seconds to wait before blaming a signal death we did not ask for on the job.

    A daemon shutting down kills containers (exit 137/143) while its event stream still runs, before anyone
    can tell that it is going away. Recording such an exit waits until SIGNAL_SETTLE has passed, by which
    time a daemon restart or an engine outage shows in the facts and the exit is classified an interruption.
    """
    st = d.st
    asked = st.stopping is not None and st.stopping.containerName == c.name
    if asked or c.oom_killed or c.exit_code is None or c.exit_code < 128 or c.finished_at is None:
        return 0.0
    if cause(d, c):
        return 0.0
    return SIGNAL_SETTLE - (d.now - c.finished_at).total_seconds()


def node_lost(d: Draft, c: ContainerInfo) -> str | None:
    """Why the node `c` runs on is lost (down past the settle time, drained), or None."""
    return d.facts.lost_nodes.get(c.node) if c.node else None


def orphaned(d: Draft, c: ContainerInfo) -> str | None:
    """Why an attempt ended with its node (Swarm marks the task of a removed node orphaned: no exit code, no log to
    wait for), or None."""
    if c.state != "dead" or c.exit_code is not None or not c.node:
        return None
    return d.facts.lost_nodes.get(c.node) or f"node {c.node[:12]} left the swarm with the attempt on it"


def leave_drained_node(d: Draft, c: ContainerInfo) -> bool:
    """A running attempt on a drained node is stopped (Swarm does not move a job's task); its exit is then recorded
    as an interruption and the job runs again elsewhere. The node answers, so the next attempt waits for this one to
    end: never two at once. True when the stop is asked for."""
    why = d.facts.drained_nodes.get(c.node) if c.node else None
    if why is None:
        return False
    d.event("NodeDrained", f"container {c.name}: {why}; stopping it to run the job elsewhere", warning=True)
    stopping.request(d, c, "NodeDrained")
    return True


def record_node_lost(d: Draft, c: ContainerInfo, m: JobManifest, why: str) -> None:
    """The attempt's node is gone: the attempt is interrupted and its task removed at once. The engine cannot stop a
    task on a node it does not reach, so the removal is what stops it if the node comes back (Swarm shuts down the
    tasks of a removed service there); the next attempt goes to another node."""
    d.record_history(c, "Interrupted", "NodeLost")
    d.actions.append(Remove(c.name))
    d.event("NodeLost", f"container {c.name}: {why}", warning=True)
    interrupted(d, m, why)


def remove_recorded_live(d: Draft, current: dict[str, ContainerInfo]) -> None:
    """Attempts already recorded that the engine still lists as live (a lost node's task whose removal has not got
    through yet) are removed again: at most one live task per job."""
    removing = {a.container for a in d.actions if isinstance(a, Remove)}
    for other in current.values():
        if is_live(other) and d.st.recorded(other.name) and other.name not in removing:
            d.actions.append(Remove(other.name))


def record_vanished(d: Draft, name: str, m: JobManifest) -> None:
    """The attempt's container is gone without a recorded exit: removed behind our back, or lost."""
    d.record_history(current_attempt(d.st, name), "Interrupted", "ContainerRemoved")
    interrupted(d, m, f"container {name} disappeared (removed outside the controller)")


def interrupted(d: Draft, m: JobManifest, why: str) -> None:
    st = d.st
    d.condition("Interrupted", "True", "Interrupted", why)
    if m.spec.interruptionPolicy == "Fail":
        d.finish("Failed", "Interrupted", why)
        return
    d.set_phase("Pending", "Interrupted", why)
    st.nextAttemptAt = None
    d.event("Interrupted", f"attempt {st.attempts} interrupted ({why}); starting a new attempt", warning=True)
