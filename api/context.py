"""What every route needs: the data folder, the list index and the specs folder, bundled per app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from controller.store import DataStore

from .access import Access
from .configs import ConfigFolder
from .errors import not_found
from .index import JobIndex
from .listrows import ListRows
from .simulations import Simulations
from .specfiles import SpecFiles

MAX_FOLLOWERS = 64  # `logs?follow=true` streams at once: each holds a connection and a descriptor


@dataclass
class ApiContext:
    store: DataStore
    index: JobIndex
    specs: SpecFiles
    token: str | None
    access: Access
    max_body: int
    configs: ConfigFolder
    simulations: Simulations
    rows: ListRows  # encoded GET /jobs rows, rebuilt only when their files change
    followers: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(MAX_FOLLOWERS))

    def job_known(self, name: str) -> bool:
        """A job exists if the controller has a record of it or a spec file defines it (a collected job's kept
        artifacts alone do not make it one)."""
        if self.store.is_deleted(name):
            return False  # deleted by a user: gone from every listing, while the controller archives it
        return self.store.has_status(name) or self.specs.find(name) is not None

    def require_job(self, name: str) -> None:
        if not self.job_known(name):
            raise not_found(name)


def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]
