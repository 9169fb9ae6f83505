"""The controller's heartbeat (DATA/.opeva/heartbeat.json) as the API reads it: how old it is, and whether it is fresh.

The controller rewrites it every 5 s with its view of Docker, capacity, the queue, resource use and its own metrics;
an API in another process learns all of that only from this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.status import parse_iso, utcnow
from controller.store import DataStore, read_json

HEARTBEAT_FRESH_SECONDS = 30.0


def heartbeat_age(beat: dict[str, Any]) -> float | None:
    t = parse_iso(beat.get("time"))
    return None if t is None else max(0.0, (utcnow() - t).total_seconds())


@dataclass(frozen=True)
class Heartbeat:
    data: dict[str, Any]
    age: float | None

    @property
    def alive(self) -> bool:
        return self.age is not None and self.age <= HEARTBEAT_FRESH_SECONDS

    def section(self, key: str, kind: type) -> Any:
        """A part of a fresh heartbeat, if it has the expected JSON type; an empty one of that type otherwise."""
        value = self.data.get(key) if self.alive else None
        return value if isinstance(value, kind) else kind()


def read_heartbeat(store: DataStore) -> Heartbeat:
    beat = read_json(store.state_dir / "heartbeat.json")
    beat = beat if isinstance(beat, dict) else {}
    return Heartbeat(beat, heartbeat_age(beat))
