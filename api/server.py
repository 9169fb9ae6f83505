"""Running the API with uvicorn: in the foreground, or in a thread beside the controller (`opeva run`).

Without a token the API listens only on loopback: `check_bind` refuses any other address, so a controller that can
start containers is never reachable unauthenticated from the network.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

STARTUP_TIMEOUT = 10.0


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
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
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
