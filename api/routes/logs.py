"""A job's log: a byte range (`offset`, `tail`) or a live follow, streamed from the file, never read whole."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from controller.errors import OutOfRange
from controller.status import FINAL_PHASES

from ..context import MAX_FOLLOWERS, ApiContext, Ctx
from ..errors import ApiError
from ..jobfiles import follow, log_window, stream_range
from ..models import JobName

router = APIRouter(tags=["logs"])

SPEC_RECHECK_SECONDS = 5.0
TEXT = "text/plain; charset=utf-8"


def log_file(ctx: ApiContext, name: str, which: str = "log"):
    return ctx.store.open_job_file(ctx.store.log_path(name, capture=(which == "log")))


def job_finished(ctx: ApiContext, name: str):
    """A check for `follow`: the job's phase is terminal or Stopped, or the job no longer exists at all."""
    last_spec_check = [time.monotonic()]

    def finished() -> bool:
        status = ctx.store.read_status(name)
        if status is not None:
            return status.phase in FINAL_PHASES
        # No status yet: the controller has not seen the job. Keep waiting while its spec file exists.
        now = time.monotonic()
        if now - last_spec_check[0] < SPEC_RECHECK_SECONDS:
            return False
        last_spec_check[0] = now
        return not ctx.job_known(name)

    return finished


async def _released(stream: AsyncIterator[bytes], slot: threading.BoundedSemaphore) -> AsyncIterator[bytes]:
    """The stream; its follower slot is given back however it ends (done, client gone, server stopping)."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        slot.release()


def whole_log(ctx: ApiContext, name: str, which: str = "log") -> StreamingResponse:
    f = log_file(ctx, name, which)
    if f is None:
        return StreamingResponse(iter(()), media_type=TEXT, headers={"X-Next-Offset": "0", "Content-Length": "0"})
    start, end = log_window(f, None, None)
    return StreamingResponse(
        stream_range(f, start, end),
        media_type=TEXT,
        headers={"X-Next-Offset": str(end), "Content-Length": str(end - start)},
    )


@router.get(
    "/jobs/{name}/logs",
    response_class=PlainTextResponse,
    summary="A job's log (range, tail, follow)",
    response_description="The log bytes as text. `X-Next-Offset` is the offset to ask for next time "
    "(absent with follow=true, whose stream ends when the job is finished and the file drained).",
    responses={
        200: {
            "headers": {
                "X-Next-Offset": {
                    "schema": {"type": "integer"},
                    "description": "Byte offset just after what was sent.",
                },
                "X-Start-Offset": {"schema": {"type": "integer"}, "description": "Byte offset of the first byte sent."},
            },
            "content": {"text/plain": {"example": "epoch 1 reward 0.31\nepoch 2 reward 0.45\n"}},
        }
    },
)
def get_logs(
    name: JobName,
    ctx: Ctx,
    tail: Annotated[int | None, Query(ge=0, le=10_000_000, description="Only the last N lines.")] = None,
    offset: Annotated[int | None, Query(ge=0, description="Start at this byte offset (from X-Next-Offset).")] = None,
    follow_: Annotated[
        bool,
        Query(
            alias="follow",
            description="Keep streaming new lines until the job is finished (Succeeded, Failed or Stopped).",
        ),
    ] = False,
    file: Annotated[
        Literal["log", "stdout"],
        Query(
            description="`log`: logs/NAME.log (default). `stdout`: "
            "logs/NAME.stdout.log, the captured output of a job "
            "with logCapture: false."
        ),
    ] = "log",
) -> StreamingResponse:
    ctx.require_job(name)
    f = log_file(ctx, name, file)
    if f is None:
        start, end = 0, 0
        if offset:
            raise OutOfRange(f"offset {offset} is past the end of the log (0 bytes; no log yet)", 0)
    else:
        start, end = log_window(f, offset, tail)
    if follow_:
        if f is not None:
            f.close()
        if not ctx.followers.acquire(blocking=False):
            raise ApiError(429, f"{MAX_FOLLOWERS} logs are already being followed; try again later")
        return StreamingResponse(
            _released(follow(lambda: log_file(ctx, name, file), start, job_finished(ctx, name)), ctx.followers),
            media_type=TEXT,
            headers={"X-Start-Offset": str(start), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    headers = {"X-Next-Offset": str(end), "X-Start-Offset": str(start), "Content-Length": str(end - start)}
    if f is None:
        return StreamingResponse(iter(()), media_type=TEXT, headers=headers)
    return StreamingResponse(stream_range(f, start, end), media_type=TEXT, headers=headers)
