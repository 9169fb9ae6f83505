"""The git source: what the folder follows and where it is (GET /source), and the push webhook (POST /webhooks/git).

Both read or wake the controller's git source (controller/gitsource.py); its state is DATA/.opeva/git/source.json.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request

from controller.gitsource import read_source

from ..context import Ctx
from ..errors import ApiError
from ..models import ErrorBody
from ..webhooks import verify

log = structlog.get_logger("opeva.api")

router = APIRouter(tags=["source"])


@router.get("/source", summary="The git repository the specs folder follows, and its last fetch and apply")
def get_source(ctx: Ctx) -> dict[str, Any]:
    source = read_source(ctx.store.root)
    if source is None:
        raise ApiError(404, "the specs folder does not follow a git repository (start with `opeva run --git URL`)")
    return source


@router.post(
    "/webhooks/git",
    summary="Push webhook (GitHub, GitLab, Gitea): fetch now",
    openapi_extra={"security": []},
    status_code=202,
    responses={
        401: {"model": ErrorBody, "description": "The signature (or GitLab token) is missing or wrong."},
        404: {"model": ErrorBody, "description": "No webhook here: `opeva run --git` without a webhook secret."},
    },
)
async def git_webhook(request: Request) -> dict[str, Any]:
    hook = getattr(request.app.state, "webhook", None)
    if hook is None:
        raise ApiError(404, "no webhook here: start `opeva run --git URL --git-webhook-secret-file FILE`")
    body = await request.body()
    sender = verify(hook.secret, request.headers, body)
    if sender is None:
        client = request.client.host if request.client else None
        log.warning("webhook_rejected", client=client, message="missing or wrong signature")
        raise ApiError(401, "webhook signature missing or wrong")
    kind = next(
        (request.headers[h] for h in ("x-github-event", "x-gitlab-event", "x-gitea-event") if h in request.headers),
        None,
    )
    log.info("webhook_received", sender=sender, kind=kind)
    hook.trigger()
    return {"fetch": "requested"}
