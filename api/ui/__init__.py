"""The web dashboard at /ui: Jinja2 pages, htmx (vendored in static/), sessions for browsers.

`install_dashboard(app, token)` adds the pages and the static files to the API app.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from .routes import STATIC_DIR, Denied, ListCache, router
from .session import Sessions


def install_dashboard(app: FastAPI, token: str | None) -> None:
    app.state.ui_sessions = Sessions(token)
    app.state.ui_list_cache = ListCache()
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)

    @app.exception_handler(Denied)
    async def denied(_: Request, exc: Denied) -> Response:
        return exc.response
