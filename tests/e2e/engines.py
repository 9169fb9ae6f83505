"""The engines the end-to-end cases run over: this Docker engine, and a real 3-node Swarm (tests/swarm/cluster.py).

A test takes the `engine` fixture (parametrized docker/swarm) and starts its controllers with `engine.env`; it looks
at what the engine holds for a job with `engine.containers(name)`: one dict per container (Docker) or attempt
service (Swarm), each with a `State` (`running` while the job's process runs).
"""

from __future__ import annotations

import docker

from .harness import BUSYBOX, containers


class DockerEngine:
    name = "docker"
    env: dict[str, str] = {}

    @staticmethod
    def containers(job: str) -> list[dict]:
        return containers(job)


class SwarmEngine:
    name = "swarm"

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        # the data-folder probe runs the test image: every node has it (tests/swarm/cluster.py)
        self.env = {"OPEVA_RUNTIME": "swarm", "OPEVA_SWARM_HOST": cluster.manager_url, "OPEVA_PROBE_IMAGE": BUSYBOX}
        self.client = docker.APIClient(base_url=cluster.manager_url)

    def containers(self, job: str) -> list[dict]:
        """Each attempt service of the job, read straight from the manager; State is its newest task's state."""
        out = []
        for svc in self.client.services(filters={"label": f"opeva.job={job}"}):
            try:
                tasks = self.client.tasks(filters={"service": svc["ID"]})
            except docker.errors.NotFound:
                continue  # removed meanwhile
            newest = max(tasks, key=lambda t: t.get("CreatedAt", ""), default=None)
            state = (newest or {}).get("Status", {}).get("State", "none")
            out.append({"Names": svc["Spec"]["Name"], "State": state, "NodeID": (newest or {}).get("NodeID")})
        return out
