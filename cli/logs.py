"""`opeva logs NAME [-f] [--tail N] [--attempt N]`: the job's log file through the API, streamed."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import click

from .errors import CliError
from .http import ApiClient
from .options import complete_job_names, quiet_broken_pipe, stdout_bytes, with_client


class AttemptSection:
    """Picks one attempt's section out of a log: from its header line up to the next header."""

    def __init__(self, job: str, attempt: int, container: str | None):
        self.prefix = f"===== opeva: job {job} attempt ".encode()
        self.attempt = attempt
        self.container = container.encode() if container else None
        self.inside = False
        self.found = False
        self.done = False  # the section ended: another attempt's header followed it
        self.partial = b""

    def _is_ours(self, header: bytes) -> bool:
        words = header[len(self.prefix) :].split()
        try:
            number = int(words[0])
        except (IndexError, ValueError):
            return False
        if self.container is not None:
            return len(words) >= 3 and words[1] == b"container" and words[2] == self.container
        return number == self.attempt

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            if line.startswith(self.prefix):
                ours = self._is_ours(line)
                if self.found and not ours:
                    self.done = True
                self.inside = ours
                self.found = self.found or ours
            if self.inside:
                out.append(line + b"\n")
        return out

    def rest(self) -> list[bytes]:
        """A last line without a newline, at the end of the stream."""
        tail, self.partial = self.partial, b""
        return [tail] if tail and self.inside else []


def _attempt_container(status: dict[str, Any], attempt: int) -> str | None:
    """The container of attempt N of the current run, from the status (history, or the current attempt's name)."""
    for h in (status.get("history") or [])[status.get("runHistoryStart") or 0 :]:
        if h.get("attempt") == attempt and h.get("containerName"):
            return h["containerName"]
    current, attempts = status.get("containerName"), status.get("attempts")
    if isinstance(current, str) and isinstance(attempts, int) and attempts and current.endswith(f"-{attempts}"):
        return current[: -len(str(attempts))] + str(attempt)
    return None


@click.command("logs")
@click.argument("name", shell_complete=complete_job_names)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N", help="Only the last N lines.")
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only attempt N of the current run (its section of the log).",
)
@with_client
def logs_cmd(client: ApiClient, name: str, follow: bool, tail: int | None, attempt: int | None) -> None:
    """Print a job's log (stdout and stderr of every attempt, kept after the container is gone).

    Each attempt's section starts with a line `===== opeva: job NAME attempt N container ...`. With -f the
    command ends when the job does (Succeeded, Failed or Stopped).

    \b
    Examples:
      opeva logs ppo-seed-42
      opeva logs ppo-seed-42 -f --tail 20
      opeva logs flaky --attempt 2
    """
    path = f"/jobs/{name}/logs"
    try:
        if attempt is None:
            params: dict[str, Any] = {}
            if tail is not None:
                params["tail"] = tail
            if follow:
                params["follow"] = "true"
            with client.stream(path, params) as response:
                for chunk in response.iter_bytes():
                    stdout_bytes(chunk)
            return
        detail = client.job(name)
        status = detail.get("status") if isinstance(detail.get("status"), dict) else {}
        section = AttemptSection(name, attempt, _attempt_container(status, attempt))
        kept: deque[bytes] = deque(maxlen=tail) if tail is not None else deque()
        with client.stream(path, {}) as response:
            next_offset = int(response.headers.get("X-Next-Offset", "0"))
            for chunk in response.iter_bytes():
                kept.extend(section.feed(chunk))
        if not follow or section.done:
            kept.extend(section.rest())
        stdout_bytes(b"".join(kept))
        if follow and not section.done:
            with client.stream(path, {"offset": next_offset, "follow": "true"}) as response:
                for chunk in response.iter_bytes():
                    stdout_bytes(b"".join(section.feed(chunk)))
                    if section.done:
                        break
            stdout_bytes(b"".join(section.rest()))
        if not section.found:
            recorded = status.get("attempts") or 0
            raise CliError(
                f"attempt {attempt} of job {name} is not in its log (the current run has "
                f"{recorded} attempt{'s' if recorded != 1 else ''}; jobs with logCapture: false write "
                "their own log, without attempt sections)"
            )
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        quiet_broken_pipe()
