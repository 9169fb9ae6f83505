"""The dashboard's pages (`/ui`), served by the API itself: server-rendered, refreshed by htmx polling.

Pages read what the JSON API reads (the job index, the records, the heartbeat) and actions call the same route
functions the CLI's HTTP calls reach (api/routes/jobs.py), so the dashboard can do nothing the API cannot. Every
page needs a session when a token is configured (api/ui/session.py); every action needs the session's CSRF token.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from controller.sampler import read_history
from controller.selectors import parse_label_selector
from controller.status import PHASES, TERMINAL_PHASES, epoch, normalize_phase
from controller.store import read_json

from ..context import ApiContext
from ..errors import ApiError, DomainError
from ..heartbeat import read_heartbeat
from ..index import Snapshot
from ..jobfiles import stream_range
from ..models import JobName
from ..routes import jobs as job_routes
from . import logview, views
from .session import COOKIE, CSRF_FIELD, CSRF_HEADER, SESSION_SECONDS, Sessions

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["duration"] = views.human_seconds
templates.filters["bytes"] = views.human_bytes
templates.filters["when"] = views.when

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ACTIONS = {
    "stop": (job_routes.stop_job, "Stop requested: the container gets its grace period, then the job is Stopped."),
    "resume": (job_routes.resume_job, "Resumed."),
    "rerun": (job_routes.rerun_job, "Rerun requested: a new run starts."),
    "delete": (job_routes.delete_job, "Spec file deleted: the job is stopped; its record and artifacts stay."),
}
MAX_RESULT_BYTES = 256 * 1024

router = APIRouter(prefix="/ui", include_in_schema=False)


# ---- plumbing ---------------------------------------------------------------------------------------------------
def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def _sessions(request: Request) -> Sessions:
    return request.app.state.ui_sessions


def _session(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if _sessions(request).valid(value) else None


def _set_cookie(request: Request, response: Response, value: str) -> None:
    """Secure when the page came over HTTPS (directly, or through a proxy uvicorn trusts), so it is never sent
    in clear afterwards; plain HTTP on loopback keeps working."""
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="strict", path="/ui", secure=secure
    )


class Denied(Exception):
    """A page asked for without a session: answered by the login redirect or a 401 (handler in api/ui/__init__.py)."""

    def __init__(self, response: Response):
        self.response = response


def _gate(request: Request) -> str | None:
    """The session of a page view; without a token one is created. Raises Denied (login redirect or 401)."""
    session = _session(request)
    if session is not None or not _sessions(request).login_required:
        return session
    if request.headers.get("hx-request"):
        raise Denied(PlainTextResponse("signed out: reload the page to log in", status_code=401))
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise Denied(RedirectResponse(f"/ui/login?{urlencode({'next': target})}", status_code=303))


def _render(request: Request, template: str, **values: Any) -> HTMLResponse:
    session = _gate(request)
    new_session = session is None
    if new_session:
        session = _sessions(request).issue()
    html = templates.get_template(template).render(
        csrf=_sessions(request).csrf(session or ""),
        login_required=_sessions(request).login_required,
        **values,
    )
    response = HTMLResponse(html, headers=SECURITY_HEADERS)
    if new_session and session:
        _set_cookie(request, response, session)
    return response


def _signed_in(request: Request) -> None:
    _gate(request)


SignedIn = Depends(_signed_in)  # on every page route: no page, partial or download without a session


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


def _job_json(ctx: ApiContext, name: str, rel: str, max_bytes: int | None = None) -> tuple[Any, str | None]:
    """(value, problem) of a JSON file the job wrote; value None when missing or unreadable."""
    path = ctx.store.job_dir(name) / rel
    if max_bytes is not None:
        try:
            if path.stat().st_size > max_bytes:
                return None, f"{rel} is larger than {max_bytes // 1024} KiB; download it through the API"
        except OSError:
            return None, None
    try:
        found, value = ctx.store.read_job_json(path)
    except DomainError as err:  # UnsafeFile: a link, not a regular file, not JSON
        return None, err.message
    return (value, None) if found else (None, None)


# ---- the jobs list ---------------------------------------------------------------------------------------------
def _list_query(request: Request) -> dict[str, Any]:
    q = request.query_params
    phases = [p for p in (normalize_phase(v) for v in q.getlist("phase")) if p]
    sort = q.get("sort", "name")
    try:
        page = int(q.get("page", "1"))
    except ValueError:
        page = 1
    return {
        "phases": phases,
        "label": q.get("label", "")[:500],
        "text": q.get("q", "")[:200],
        "sort": sort if sort in views.SORTS else "name",
        "desc": q.get("desc") == "1",
        "page": page,
    }


def _query_string(query: dict[str, Any], **changes: Any) -> str:
    merged = {**query, **changes}
    params: list[tuple[str, str]] = [("phase", p) for p in merged["phases"]]
    for key, param in (("label", "label"), ("text", "q")):
        if merged[key]:
            params.append((param, merged[key]))
    if merged["sort"] != "name":
        params.append(("sort", merged["sort"]))
    if merged["desc"]:
        params.append(("desc", "1"))
    if merged["page"] != 1:
        params.append(("page", str(merged["page"])))
    return urlencode(params)


class ListCache:
    """The list page's work over one version of the index, kept until the index changes: every row's times as
    numbers, and the last few filtered and sorted lists (the live poll asks the same question every 2 s)."""

    KEEP = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._times: dict[str, views.Times] = {}
        self._lists: OrderedDict[tuple, list[dict[str, Any]]] = OrderedDict()

    def arranged(
        self, ctx: ApiContext, query: dict[str, Any], selector: list[tuple[str, str | None]], now: float
    ) -> tuple[Snapshot, dict[str, views.Times], list[dict[str, Any]]]:
        snap = ctx.index.snapshot_nowait()
        with self._lock:
            if self._snap is not snap:
                self._snap, self._lists = snap, OrderedDict()
                self._times = {row["name"]: views.Times.of(row) for row in snap.entries}
            key = (tuple(sorted(query["phases"])), tuple(selector), query["text"], query["sort"], query["desc"])
            cached = self._lists.get(key) if query["sort"] != "duration" else None  # durations grow while jobs run
            if cached is not None:
                self._lists.move_to_end(key)
                return snap, self._times, cached
            times = self._times
        rows = ctx.index.query(set(query["phases"]) or None, selector, snap=snap).items
        arranged = views.arrange(rows, query["text"], query["sort"], query["desc"], now, times)
        with self._lock:
            if self._snap is snap:
                self._lists[key] = arranged
                while len(self._lists) > self.KEEP:
                    self._lists.popitem(last=False)
        return snap, times, arranged


def _list_values(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    query = _list_query(request)
    error = None
    try:
        selector = parse_label_selector([query["label"]]) if query["label"] else []
    except ValueError as err:
        selector, error = [], str(err)
    now = time.time()
    snap, times, arranged = request.app.state.ui_list_cache.arranged(ctx, query, selector, now)
    page = views.cut(arranged, query["page"])
    beat = read_heartbeat(ctx.store)
    host = beat.data.get("host") if isinstance(beat.data.get("host"), str) else None
    usage = beat.section("usage", dict)
    rows = []
    for row in page.rows:
        progress = None
        if row["phase"] in ("Running", "Succeeded", "Failed", "Stopped"):
            progress = views.progress_view(ctx.store.job_json_or_none(ctx.store.progress_path(row["name"])))
        icon, css = views.PHASE_LOOK.get(row["phase"] or "", ("?", "unknown"))
        rows.append(
            {
                **row,
                "icon": icon,
                "css": css,
                "progress": progress,
                "age_text": views.human_seconds(times.get(row["name"], views.NO_TIMES).age(now)),
                "duration_text": views.human_seconds(times.get(row["name"], views.NO_TIMES).duration(now)),
                "host": host if row["container_name"] else None,
                "gpu_idle": False,
                "usage": usage.get(row["name"]) if isinstance(usage.get(row["name"]), dict) else None,
            }
        )
    base = {**query, "page": page.page}
    return {
        "rows": rows,
        "total": page.total,
        "all_jobs": len(snap.names),
        "page": page.page,
        "pages": page.pages,
        "query": query,
        "qs": _query_string(base),
        "prev_qs": _query_string(base, page=page.page - 1) if page.page > 1 else None,
        "next_qs": _query_string(base, page=page.page + 1) if page.page < page.pages else None,
        "sort_qs": {
            key: _query_string(base, sort=key, desc=(key == query["sort"] and not query["desc"]), page=1)
            for key in views.SORTS
        },
        "phase_names": PHASES,
        "phase_look": views.PHASE_LOOK,
        "counts": snap.phase_counts,
        "error": error,
        "alive": beat.alive,
    }


@router.get("", response_class=HTMLResponse, dependencies=[SignedIn])
def jobs_page(request: Request) -> Response:
    return _render(request, "jobs.html", **_list_values(request))


@router.get("/rows", response_class=HTMLResponse, dependencies=[SignedIn])
def jobs_rows(request: Request) -> Response:
    return _render(request, "_rows.html", **_list_values(request))


# ---- one job ---------------------------------------------------------------------------------------------------
def _job_values(request: Request, name: str) -> dict[str, Any]:
    ctx = _ctx(request)
    detail = job_routes.get_job(name, ctx)  # 404 when the job is unknown
    status = detail["status"] or {}
    now = time.time()
    info = read_json(ctx.store.job_dir(name) / "job_info.json")
    info = info if isinstance(info, dict) else {}
    progress_doc, progress_problem = _job_json(ctx, name, "progress/progress.json", 64 * 1024)
    history = read_history(ctx.store, name, "progress")
    resources = read_history(ctx.store, name, "resources", limit=120)
    attempts = []
    run_start = status.get("runHistoryStart") or 0
    for i, h in enumerate(status.get("history") or []):
        if not isinstance(h, dict):
            continue
        started, finished = epoch(h.get("startedAt")), epoch(h.get("finishedAt"))
        icon, css = views.OUTCOME_LOOK.get(h.get("outcome") or "", ("?", "unknown"))
        attempts.append(
            {
                **h,
                "icon": icon,
                "css": css,
                "earlier_run": i < run_start,
                "seconds": (finished - started) if started is not None and finished is not None else None,
            }
        )
    if status.get("phase") == "Running" and status.get("containerName"):
        recorded = {a.get("containerName") for a in attempts[run_start:]}
        if status["containerName"] not in recorded:
            started = epoch(status.get("startedAt"))
            attempts.append(
                {
                    "attempt": status.get("attempts"),
                    "containerName": status["containerName"],
                    "startedAt": status.get("startedAt"),
                    "finishedAt": None,
                    "outcome": "Running",
                    "exitCode": None,
                    "reason": None,
                    "icon": views.OUTCOME_LOOK["Running"][0],
                    "css": "running",
                    "earlier_run": False,
                    "seconds": None if started is None else now - started,
                }
            )
    longest = max([a["seconds"] or 0 for a in attempts] + [1])
    for a in attempts:
        a["width"] = round(4 + 296 * (a["seconds"] or 0) / longest, 1)
    phase = status.get("phase")
    icon, css = views.PHASE_LOOK.get(phase or "", ("?", "unknown"))
    beat = read_heartbeat(ctx.store)
    usage = beat.section("usage", dict).get(name)
    result, result_problem = _job_json(ctx, name, "results/result.json", MAX_RESULT_BYTES)
    provenance = {k: v for k, v in info.items() if k.startswith("git") and isinstance(v, str | int)}
    spec = detail["spec"] or {}
    times = views.Times.of(
        {
            "submitted_at": status.get("submittedAt"),
            "started_at": status.get("startedAt"),
            "finished_at": status.get("finishedAt"),
            "updated_at": status.get("updatedAt"),
        }
    )
    return {
        "name": name,
        "detail": detail,
        "spec": spec,
        "status": status,
        "phase": phase,
        "icon": icon,
        "css": css,
        "info": info,
        "progress": views.progress_view(progress_doc),
        "progress_problem": progress_problem,
        "progress_charts": views.progress_charts(history),
        "resource_charts": views.resource_charts(resources),
        "usage": usage if isinstance(usage, dict) else None,
        "gpu_idle": bool(status.get("gpuIds")) and views.gpu_idle(resources),
        "attempts": attempts,
        "events": [e for e in ctx.store.read_events(name, 100) if isinstance(e, dict)][::-1],
        "result": None if result is None else json.dumps(result, indent=2, ensure_ascii=False)[:MAX_RESULT_BYTES],
        "result_problem": result_problem,
        "mlflow_url": info.get("mlflow_run_url") if isinstance(info.get("mlflow_run_url"), str) else None,
        "provenance": provenance,
        "finished": phase in TERMINAL_PHASES or phase == "Stopped",
        "suspended": bool(spec.get("suspend")),
        "has_spec": detail["specFile"] is not None and detail["spec"] is not None,
        "age": times.age(now),
        "duration": times.duration(now),
    }


@router.get("/jobs/{name}", response_class=HTMLResponse, dependencies=[SignedIn])
def job_page(request: Request, name: JobName) -> Response:
    values = _job_values(request, name)
    log_attempts = _log_sections(request, name)
    q = request.query_params
    return _render(
        request,
        "job.html",
        **values,
        log_sections=log_attempts,
        done=ACTIONS[q["done"]][1] if q.get("done") in ACTIONS else None,
        error=q.get("error", "")[:500] or None,
    )


@router.get("/jobs/{name}/live", response_class=HTMLResponse, dependencies=[SignedIn])
def job_live(request: Request, name: JobName) -> Response:
    part = request.query_params.get("part", "top")
    return _render(
        request, "_job_live.html", part=part if part in ("top", "history") else "top", **_job_values(request, name)
    )


# ---- the log ---------------------------------------------------------------------------------------------------
def _log_sections(request: Request, name: str) -> list[logview.Section]:
    f = _ctx(request).store.open_job_file(_ctx(request).store.log_path(name))
    if f is None:
        return []
    with f:
        return logview.sections(f, name)


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@router.get("/jobs/{name}/log", response_class=HTMLResponse, dependencies=[SignedIn])
def job_log(request: Request, name: JobName) -> Response:
    """The first view of the log (its tail), or the bytes after `offset`, with the poller that asks for more."""
    ctx = _ctx(request)
    ctx.require_job(name)
    index, offset = _int(request.query_params.get("section")), _int(request.query_params.get("offset"))
    status = ctx.store.read_status(name)
    final = status is not None and (status.phase in TERMINAL_PHASES or status.phase == "Stopped")
    f = ctx.store.open_job_file(ctx.store.log_path(name))
    if f is None:
        chunk = logview.Chunk("", 0, False, False)
    else:
        with f:
            section = logview.pick(logview.sections(f, name), index) if index else None
            chunk = logview.read_chunk(f, section, offset, final)
    return _render(
        request,
        "_log.html",
        name=name,
        chunk=chunk,
        first=offset is None,
        section=index,
        live=not chunk.ended and not (final and chunk.next_offset == offset),
    )


@router.get("/jobs/{name}/log.txt", dependencies=[SignedIn])
def job_log_download(request: Request, name: JobName) -> Response:
    ctx = _ctx(request)
    ctx.require_job(name)
    f = ctx.store.open_job_file(ctx.store.log_path(name))
    if f is None:
        return PlainTextResponse("", headers={"Content-Disposition": f'attachment; filename="{name}.log"'})
    index = _int(request.query_params.get("section"))
    section = logview.pick(logview.sections(f, name), index) if index else None
    start = section.start if section else 0
    end = section.end if section and section.end is not None else logview.jobfiles.file_size(f)
    suffix = f"-attempt-{section.attempt}" if section else ""
    return StreamingResponse(
        stream_range(f, start, end),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}{suffix}.log"', **SECURITY_HEADERS},
    )


# ---- actions ---------------------------------------------------------------------------------------------------
@router.post("/jobs/{name}/{action}")
async def job_action(request: Request, name: JobName, action: str) -> Response:
    """stop, resume, rerun, delete: the same calls as `POST /jobs/NAME/stop` (etc.), behind session and CSRF checks."""
    if action not in ACTIONS:
        return PlainTextResponse(f"no such action: {action}", status_code=404)
    form = await _form(request)
    session = _session(request)
    if session is None:
        return PlainTextResponse("refused: no session; log in first", status_code=401, headers=SECURITY_HEADERS)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not _sessions(request).csrf_ok(session, given):
        return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403, headers=SECURITY_HEADERS)
    fn, _ = ACTIONS[action]
    try:
        fn(name, _ctx(request))
    except ApiError as err:
        return RedirectResponse(f"/ui/jobs/{name}?{urlencode({'error': err.message})}", status_code=303)
    return RedirectResponse(f"/ui/jobs/{name}?done={action}", status_code=303)


# ---- hosts, capacity and the queue -----------------------------------------------------------------------------
def _hosts_values(request: Request) -> dict[str, Any]:
    beat = read_heartbeat(_ctx(request).store)
    summary = beat.section("capacity", dict)
    capacity = summary.get("capacity") or {}
    used = summary.get("used") or {}
    reservations = beat.section("reservations", dict)
    usage = beat.section("usage", dict)
    gpus_total = capacity.get("gpus") or []
    gpus_used = used.get("gpus") or []
    return {
        "alive": beat.alive,
        "age": beat.age,
        "host": beat.data.get("host") if isinstance(beat.data.get("host"), str) else "this machine",
        "docker": beat.data.get("docker") if beat.alive else None,
        "capacity": capacity,
        "used": used,
        "free": {
            "cpus": max(0.0, (capacity.get("cpus") or 0) - (used.get("cpus") or 0)),
            "memory": max(0, (capacity.get("memory") or 0) - (used.get("memory") or 0)),
            "gpus": [g for g in gpus_total if g not in gpus_used],
        },
        "running": [
            {"job": job, **r, "usage": usage.get(job) if isinstance(usage.get(job), dict) else None}
            for job, r in sorted(reservations.items())
            if isinstance(r, dict)
        ],
        "waiting": [w for w in beat.section("waiting", list) if isinstance(w, dict)],
        "waiting_total": (summary.get("waiting") if isinstance(summary.get("waiting"), int) else 0),
        "per_queue": beat.section("waitingPerQueue", dict),
    }


@router.get("/hosts", response_class=HTMLResponse, dependencies=[SignedIn])
def hosts_page(request: Request) -> Response:
    return _render(request, "hosts.html", **_hosts_values(request))


@router.get("/hosts/live", response_class=HTMLResponse, dependencies=[SignedIn])
def hosts_live(request: Request) -> Response:
    return _render(request, "_hosts_live.html", **_hosts_values(request))


# ---- login -----------------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request, None, 200)


def _login_page(request: Request, error: str | None, status: int) -> Response:
    html = templates.get_template("login.html").render(
        next=_safe_next(request.query_params.get("next")), error=error, login_required=True, csrf=""
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    sessions = _sessions(request)
    target = _safe_next(form.get("next"))
    if not sessions.login_required:
        return RedirectResponse(target, status_code=303)
    if not sessions.token_matches(form.get("token", "")):
        html = templates.get_template("login.html").render(
            next=target, error="That token is not valid.", login_required=True, csrf=""
        )
        return HTMLResponse(html, status_code=401, headers=SECURITY_HEADERS)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, sessions.issue())
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    if not _sessions(request).csrf_ok(_session(request), form.get(CSRF_FIELD)):
        return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403, headers=SECURITY_HEADERS)
    response = RedirectResponse("/ui/login" if _sessions(request).login_required else "/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
