"""Dashboard sessions and CSRF tokens: signed values, no server-side state.

With an API token configured, the login form exchanges it for a session cookie (HttpOnly, SameSite=Strict); the
signing key is derived from the token, so changing the token ends every session. Without a token, a session is
handed out on the first page view (there is nothing to log in with), still so that every action carries a CSRF
token: a page of another site cannot make the browser stop or delete jobs.

A CSRF token is the HMAC of the session value, sent back in a form field or the X-CSRF-Token header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

COOKIE = "opeva_session"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class Sessions:
    def __init__(self, token: str | None):
        self.token = token
        self._key = (
            hashlib.sha256(b"opeva-ui-session\0" + token.encode()).digest() if token else secrets.token_bytes(32)
        )

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def issue(self) -> str:
        body = f"{int(time.time()) + SESSION_SECONDS}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, value: str | None) -> bool:
        if not value:
            return False
        body, _, signature = value.rpartition(".")
        expiry, _, _ = body.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return False
        try:
            return int(expiry) > time.time()
        except ValueError:
            return False

    def csrf(self, session: str) -> str:
        return self._sign(f"csrf\0{session}")

    def csrf_ok(self, session: str | None, given: str | None) -> bool:
        return bool(session and given and self.valid(session) and hmac.compare_digest(given, self.csrf(session)))
