"""The API application: factory, authentication, body cap, error handlers and the OpenAPI document.

The API is thin: it writes spec files into the specs folder and reads the data folder; it never calls Docker. The
controller may run in the same process (`opeva run`) or elsewhere, sharing only the folders.
"""

from __future__ import annotations

import hmac
import time
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.spec import JobManifest
from controller.store import DataStore, StoreError

from .access import Access, write_type_allowed
from .configs import ConfigFolder
from .context import ApiContext
from .errors import NAME_RULE, ApiError, DomainError, domain_headers, domain_status, short_repr
from .index import JobIndex
from .listrows import ListRows
from .metrics import build_registry
from .models import ErrorBody
from .routes import health, jobs, logs, metrics, nodes, seed, source
from .seedviews import list_item
from .server import is_loopback
from .simulations import DEFAULT_SIMULATOR_IMAGE, Simulations
from .specfiles import SpecFiles
from .ui import install_dashboard
from .webhooks import Webhook

log = structlog.get_logger("opeva.api")


API_VERSION = "0.1.0"
PUBLIC_PATHS = frozenset({"/health", "/webhooks/git"})  # a webhook proves itself by its signature
UI_PREFIX = "/ui"  # the dashboard checks its own session cookie (api/ui/session.py)
DESCRIPTION = """
The OPEVA job controller's HTTP API. It is thin: **writes become spec files** in the specs folder (the controller
reconciles them into containers), **reads come from the data folder**. It never talks to Docker.

* `PUT /jobs/{name}` applies a spec (YAML or JSON body), `POST /jobs` creates one (409 if it exists),
  `DELETE /jobs/{name}` removes the spec file (the controller stops the job; its record and artifacts stay).
* `POST /jobs/{name}/stop|resume|rerun` rewrite only `spec.suspend` / `spec.runId` in the job's file.
* `GET /jobs/{name}/logs?tail=&offset=&follow=` streams the log; `X-Next-Offset` says where to continue.
* The seed service's endpoints (`/run-simulation`, `/status/{job_id}`, ...) keep their shapes.

With a token configured, every call except `/health` needs `Authorization: Bearer TOKEN`.
Errors are JSON: `{"detail": "what is wrong"}`.
"""


def create_app(
    data_dir: Path,
    specs_dir: Path | None = None,
    token: str | None = None,
    max_body: int = 1024 * 1024,
    simulator_image: str | None = None,
    host_data_dir: Path | None = None,
    simulator_tags: tuple[str, ...] = (),
    access: Access | None = None,
    webhook: Webhook | None = None,
) -> FastAPI:
    """The API over `data_dir` (specs in `specs_dir`, default DATA/specs); `token` turns on Bearer authentication.

    `simulator_image` is the repository `/run-simulation` adds `image_tag` to (default calof/opeva_simulator);
    `host_data_dir` the data folder's path on the Docker host, so dataset paths given as host paths are rewritten for
    the container; `simulator_tags` the image tags offered besides `latest`. The command line passes them from
    `Settings` ($OPEVA_SIMULATOR_IMAGE, $OPEVA_HOST_DATA, $OPEVA_SIMULATOR_TAGS). `access` says who may call without
    the token and from which web origins (api/access.py; default: loopback and the token only). `webhook` receives
    pushes for the git source running in the same process.
    """
    store = DataStore.open(data_dir, specs_dir)
    configs = ConfigFolder(store.root)
    repository = simulator_image or DEFAULT_SIMULATOR_IMAGE
    index = JobIndex(store)
    ctx = ApiContext(
        store=store,
        index=index,
        specs=SpecFiles(store, listener=index),  # a job written here is listed at once (read-your-writes)
        token=token or None,
        access=access or Access.build(token),
        max_body=max_body,
        configs=configs,
        simulations=Simulations(store, configs, repository, host_data_dir, simulator_tags),
        rows=ListRows(store, partial(list_item, store)),
    )
    app = FastAPI(
        title="OPEVA job controller API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "jobs", "description": "Jobs as desired state: spec files."},
            {"name": "logs", "description": "Log files, streamed."},
            {"name": "seed (compatibility)", "description": "The seed service's endpoints."},
            {"name": "health", "description": "Liveness and readiness, without auth."},
            {"name": "metrics", "description": "Prometheus metrics."},
            {"name": "source", "description": "The git repository the specs folder follows (GitOps)."},
            {"name": "nodes", "description": "The machines jobs run on (one, or a Swarm's nodes)."},
        ],
    )
    app.state.ctx = ctx
    app.state.webhook = webhook
    app.state.metrics = build_registry(store, ctx.index)
    for module in (jobs, logs, seed, health, metrics, source, nodes):
        app.include_router(module.router)
    install_dashboard(app, ctx.token)
    _install_error_handlers(app)
    app.add_middleware(Guard, access=ctx.access, max_body=max_body)
    if ctx.access.cors_origins:  # outermost: preflights are answered before the guard, as the old service did
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.access.cors_origins),
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Next-Offset", "X-Start-Offset", "X-Total-Count", "X-Continue"],
        )
    if ctx.access.open_networks:
        log.warning(
            "api_open_without_token",
            message="clients in these networks call the API without a token",
            **ctx.access.describe(),
        )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    log.info("api_created", data=str(store.root), specs=str(store.specs_dir), auth=ctx.token is not None)
    return app


# ---- authentication, body cap, access log ----------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware: checks the bearer token, caps the request body (413), logs each request.

    The body is read here, up to the cap, before any route sees it; a chunked body that grows past the cap is cut off
    as soon as it does, so a large upload never sits in memory.
    """

    def __init__(self, app: ASGIApp, access: Access, max_body: int):
        self.app = app
        self.access = access
        self.token = access.token.encode() if access.token else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_box = [0]

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                # the time until the answer starts, for browsers' dev tools and bench/bench_ui.py
                took = (time.perf_counter() - started) * 1000
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", b"app;dur=%.1f" % took)],
                }
            await send(message)

        try:
            denied = self._denied(scope)
            if denied:
                code, reason = denied
                headers = {"WWW-Authenticate": 'Bearer realm="opeva"'} if code == 401 else None
                await _send_error(send_logged, code, reason, headers)
                return
            body_receive = await self._capped_body(scope, receive, send_logged)
            if body_receive is None:
                return
            await self.app(scope, body_receive, send_logged)
        finally:
            emit = log.debug if scope.get("path") in PUBLIC_PATHS else log.info  # probes poll /health often
            emit(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status_box[0],
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def _denied(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request may not go on: a foreign web origin, a client outside the open networks,
        a Host a web page chose, or a missing or wrong token (see api/access.py)."""
        path = scope.get("path") or ""
        host = _text(_header(scope, b"host"))
        origin = _text(_header(scope, b"origin"))
        if origin is not None and not self.access.origin_allowed(origin, host):
            return 403, f"web origin {origin!r} is not allowed to call this API (see OPEVA_CORS_ORIGINS)"
        if origin is None and _text(_header(scope, b"sec-fetch-site")) == "cross-site":
            return 403, "cross-site browser requests are refused"
        if path in PUBLIC_PATHS or path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            return None  # the dashboard's forms carry its session and CSRF token (api/ui/session.py)
        if not write_type_allowed(scope.get("method", ""), _text(_header(scope, b"content-type")), _has_body(scope)):
            return 415, "a write's body must be JSON or YAML (Content-Type application/json or application/yaml)"
        header = _header(scope, b"authorization")
        if header is not None and self.token is not None:
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not given.strip():
                return 401, "the Authorization header must be 'Bearer TOKEN'"
            if not hmac.compare_digest(given.strip(), self.token):
                return 401, "invalid token"
            return None
        client = (scope.get("client") or (None,))[0]
        if self.access.in_open_network(client):
            if not self.access.host_allowed(host):
                return 403, f"Host {host!r} is not one of this API's names (see OPEVA_ALLOWED_HOSTS)"
            return None
        if self.token is None:
            if client is None or is_loopback(client) or not self.access.open_networks:
                if not self.access.host_allowed(host):  # DNS rebinding: a web page's name resolving to loopback
                    return 403, f"Host {host!r} is not one of this API's names (see OPEVA_ALLOWED_HOSTS)"
                return None  # the API listens on loopback only, unless open networks are named
            return 403, f"{client} is not in the networks allowed without a token (OPEVA_OPEN_NETWORKS)"
        if header is None:
            return 401, "authentication required: send 'Authorization: Bearer TOKEN'"
        return 401, "invalid token"

    async def _capped_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        if length is None and not chunked:
            return receive
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, f"Content-Length {short_repr(length.decode('latin-1'))} is not a number")
                return None
            if declared > self.max_body:
                await _send_error(send, 413, f"request body is {declared} bytes; the limit is {self.max_body} bytes")
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, f"request body is larger than the limit of {self.max_body} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (length is not None and length.strip() != b"0")


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


async def _send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# ---- errors ----------------------------------------------------------------------------------------------------
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=domain_status(exc), headers=domain_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("store_error", error=str(exc))
        return JSONResponse({"detail": f"the data folder cannot be written: {exc}"}, status_code=503)

    @app.exception_handler(OSError)
    async def os_error(_: Request, exc: OSError) -> JSONResponse:
        log.error("os_error", error=str(exc))
        return JSONResponse(
            {"detail": f"the data folder cannot be read or written: {exc.strerror or exc}"}, status_code=503
        )


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if len(loc) == 2 and loc[0] == "path" and loc[1] in ("name", "job_id"):
            parts.append(f"invalid job name {short_repr(err.get('input'))}: {NAME_RULE}")
        elif loc[:1] == ["body"] and err.get("type") == "json_invalid":
            parts.append(f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
        else:
            parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


# ---- OpenAPI ---------------------------------------------------------------------------------------------------
_ERROR_TEXT = {
    400: "Malformed request.",
    401: "Missing or wrong bearer token.",
    404: "No such job or endpoint.",
    409: "Conflicts with the current state (job exists, spec file invalid, file not servable).",
    413: "Request body too large.",
    416: "Offset past the end of the log.",
    422: "Invalid input: a bad name, parameter or spec; the message names the field.",
    503: "The data folder cannot be read or written.",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ErrorBody.model_json_schema()
    manifest = JobManifest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(manifest.pop("$defs", {}))
    schemas["JobManifest"] = manifest
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "The API token ($OPEVA_API_TOKEN)."}
    }
    schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            codes = [400, 401, 404, 413, 422, 503]
            if method in ("post", "put", "delete"):
                codes.append(409)
            if (
                path.endswith("/logs")
                or path.startswith("/logs/")
                or path.endswith("/progress")
                or path.endswith("/result")
                or path.startswith(("/progress/", "/result/"))
            ):
                codes += [409, 416] if "logs" in path else [409]
            if path in PUBLIC_PATHS:
                codes = [400, 413, 503]
            for code in sorted(set(codes)):
                responses[str(code)] = {
                    "description": _ERROR_TEXT[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
    app.openapi_schema = schema
    return schema
