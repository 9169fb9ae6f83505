"""Running the API with uvicorn: in the foreground, or in a thread beside the controller (`opeva run`).

Without a token the API listens only on loopback: `check_bind` refuses any other address, so a controller that can
start containers is never reachable unauthenticated from the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import threading
import time
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("opeva.api")

STARTUP_TIMEOUT = 10.0
# Connection limits: about 1,000 half-open connections or 500 log followers used to exhaust the descriptors (systemd's
# default limit is 1024), and then /health, the heartbeat and the log writes failed.
MAX_CONNECTIONS = 256  # connections + requests in flight; past it uvicorn answers 503 at once
HEAD_TIMEOUT = 10.0  # a connection must send a whole request head this soon after it opens or after a response
KEEP_ALIVE = 5  # an idle keep-alive connection is closed after this many seconds
MAX_HEAD_BYTES = 64 * 1024  # request line and headers
WANTED_FILES = 65_536  # RLIMIT_NOFILE raised towards this (up to the hard limit) at start


class _TimedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request head: a connection that opens and says nothing,
    or trickles a header a byte at a time, is closed after HEAD_TIMEOUT seconds instead of holding a descriptor."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self.loop.call_later(HEAD_TIMEOUT, self._head_deadline, self.cycle)

    def _head_deadline(self, cycle: object) -> None:
        if self.cycle is cycle and self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # no new request started since the deadline was armed


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards WANTED_FILES where the hard limit allows; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_FILES if hard == resource.RLIM_INFINITY else min(WANTED_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
        except (ValueError, OSError) as err:
            log.warning("file_limit_not_raised", soft=soft, hard=hard, error=str(err))
    return soft


def is_loopback(host: str) -> bool:
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, open_networks: bool = False) -> None:
    """Refuse a non-loopback address without a token, unless networks are opened on purpose (OPEVA_OPEN_NETWORKS,
    see api/access.py); ValueError with the reason and the way out."""
    if token or open_networks or is_loopback(host):
        return
    raise ValueError(
        f"refusing to listen on {host!r} without an API token: anyone who can reach that address could run "
        "containers on this machine. Set OPEVA_API_TOKEN (or pass --token-file), or listen on 127.0.0.1, or name "
        "the networks that may call it without a token in OPEVA_OPEN_NETWORKS."
    )


def _app_access(app: Any) -> tuple[str | None, bool]:
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    access = getattr(ctx, "access", None)
    return getattr(ctx, "token", None), bool(getattr(access, "open_networks", ()))


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    check_bind(host, *_app_access(app))
    raise_file_limit()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
        http=_TimedH11,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the API in the foreground until interrupted (uvicorn handles SIGINT/SIGTERM)."""
    uvicorn.Server(_config(app, host, port)).run()


def start_in_thread(app: FastAPI, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Start the API in a daemon thread and return once it listens; OSError if it cannot (address in use, ...).

    Stop it with `stop(server, thread)`. Port 0 picks a free port: `bound_port(server)` tells which.
    """
    server = uvicorn.Server(_config(app, host, port))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as err:  # uvicorn exits with SystemExit(1) when it cannot bind
            failure.append(err)

    thread = threading.Thread(target=run, name="opeva-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            cause = next((f for f in failure if not isinstance(f, SystemExit)), None)
            raise OSError(
                f"the API could not listen on {host}:{port} (address in use or not available)"
                + (f": {cause}" if cause else "")
            )
        if time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the API did not start listening on {host}:{port} within {STARTUP_TIMEOUT:.0f} s")
        time.sleep(0.01)
    return server, thread


def bound_port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for sock in srv.sockets:
            return sock.getsockname()[1]
    raise RuntimeError("the server is not listening")


def stop(server: uvicorn.Server, thread: threading.Thread, timeout: float = 10.0) -> None:
    server.should_exit = True
    thread.join(timeout)
