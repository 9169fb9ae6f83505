"""The API client: one httpx client per command, errors turned into messages a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from .config import Connection
from .errors import CliError

REQUEST_TIMEOUT = 30.0


class ClientError(CliError):
    """A request failed; `status` is the HTTP status when the API answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Unreachable(ClientError):
    """No API answers at the server address."""


def _unreachable_message(conn: Connection, err: Exception) -> str:
    cause = str(err) or type(err).__name__
    if "refused" in cause.lower():
        cause = "connection refused"
    return (
        f"cannot reach the OPEVA API at {conn.server} (server from {conn.source}): {cause}.\n"
        f"Start one with `opeva run` (controller and API; `opeva run --port PORT` for another port), or point "
        f"--server, $OPEVA_SERVER or `server:` in {conn.config_file} at a running one."
    )


class ApiClient:
    def __init__(self, conn: Connection, timeout: float = REQUEST_TIMEOUT):
        self.conn = conn
        headers = {"Accept": "application/json", "User-Agent": "opeva-cli"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self._http = httpx.Client(base_url=conn.server, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing -------------------------------------------------------------------------------------------
    def _fail(self, response: httpx.Response) -> ClientError:
        detail = None
        try:
            body = response.json()
            if isinstance(body, dict):
                detail = body.get("detail")
        except ValueError:
            pass
        status = response.status_code
        if status == 401:
            hint = "the token was rejected" if self.conn.token else "this API requires a token"
            return ClientError(
                f"{hint} (401 from {self.conn.server}); set --token, $OPEVA_API_TOKEN, or `token:` "
                f"in {self.conn.config_file}",
                status,
            )
        if not isinstance(detail, str):
            text = response.text.strip()[:200]
            detail = f"{status} {response.reason_phrase} from {self.conn.server}{response.request.url.path}" + (
                f": {text}" if text else " (is this an OPEVA API?)"
            )
        return ClientError(detail, status)

    def request(self, method: str, path: str, *, ok_missing: bool = False, **kwargs: Any) -> httpx.Response | None:
        """Send a request; None for a 404 when `ok_missing`; ClientError for anything else that is not 2xx."""
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise Unreachable(_unreachable_message(self.conn, err)) from None
        except httpx.TimeoutException:
            raise ClientError(
                f"the OPEVA API at {self.conn.server} did not answer within {self._http.timeout.read} s"
            ) from None
        except httpx.HTTPError as err:
            raise ClientError(f"request to {self.conn.server}{path} failed: {err}") from None
        if response.status_code == 404 and ok_missing:
            return None
        if response.status_code >= 400:
            raise self._fail(response)
        return response

    def get_json(self, path: str, *, ok_missing: bool = False, **kwargs: Any) -> Any:
        response = self.request("GET", path, ok_missing=ok_missing, **kwargs)
        if response is None:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"{self.conn.server}{path} did not answer JSON (is this an OPEVA API?)") from None

    @contextmanager
    def stream(self, path: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
        """A streaming GET without a read timeout (a followed log can be quiet for hours)."""
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=None)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._fail(response)
                yield response
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise Unreachable(_unreachable_message(self.conn, err)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as err:
            raise ClientError(f"the connection to {self.conn.server} broke off: {err}") from None

    # ---- the jobs resource ----------------------------------------------------------------------------------
    @staticmethod
    def _job(name: str, suffix: str = "") -> str:
        return f"/jobs/{quote(name, safe='')}{suffix}"

    def health(self) -> dict[str, Any]:
        return self.get_json("/health")

    def list_jobs(self, phases: list[str] | None = None, labels: list[str] | None = None) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("phase", p) for p in phases or []] + [("label", s) for s in labels or []]
        body = self.get_json("/jobs", params=params)
        if not isinstance(body, list):
            raise ClientError(f"{self.conn.server}/jobs did not answer a list (is this an OPEVA API?)")
        return [row for row in body if isinstance(row, dict) and isinstance(row.get("name"), str)]

    def job(self, name: str) -> dict[str, Any]:
        return self.get_json(self._job(name))

    def job_or_none(self, name: str) -> dict[str, Any] | None:
        return self.get_json(self._job(name), ok_missing=True)

    def _optional(self, path: str, **kwargs: Any) -> Any:
        """A file the job (or the controller) may not have written yet: None when absent or unreadable (409)."""
        try:
            return self.get_json(path, ok_missing=True, **kwargs)
        except ClientError as err:
            if err.status == 409:
                return None
            raise

    def progress(self, name: str) -> Any:
        return self._optional(self._job(name, "/progress"))

    def result(self, name: str) -> Any:
        return self._optional(self._job(name, "/result"))

    def job_info(self, name: str) -> dict[str, Any] | None:
        info = self._optional(f"/job-info/{quote(name, safe='')}")
        return info if isinstance(info, dict) else None

    def events(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        body = self.get_json(self._job(name, "/events"), params={"limit": limit} if limit else None)
        return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []

    def apply(self, name: str, body: bytes, fmt: str) -> dict[str, Any]:
        ctype = "application/json" if fmt == "json" else "application/yaml"
        response = self.request("PUT", self._job(name), content=body, headers={"Content-Type": ctype})
        return response.json()

    def control(self, name: str, verb: str) -> dict[str, Any]:
        """stop, resume, rerun or delete."""
        if verb == "delete":
            return self.request("DELETE", self._job(name)).json()
        return self.request("POST", self._job(name, f"/{verb}")).json()
