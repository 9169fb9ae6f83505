"""Who may call the API: a bearer token, loopback, or (explicitly) named networks; which web origins may, from a
browser.

The OPEVA group's UIs run in browsers on the lab network, call the API cross-origin and send no token: the old
service relied on the closed network. Here that is a deliberate opt-in, never a default:

* `OPEVA_CORS_ORIGINS` (comma-separated `scheme://host[:port]`): the web origins allowed to call the API from a
  browser. Preflights from them are answered as the old service did (any method and header, credentials allowed);
  a request whose `Origin` is neither listed nor the API's own is refused (403), with or without a token.
* `OPEVA_OPEN_NETWORKS` (comma-separated CIDRs, e.g. `10.20.0.0/16`): clients in these networks need no token.
  Only then may the API listen beyond loopback without a token. The `Host` header must then be an IP address,
  `localhost` or a name in `OPEVA_ALLOWED_HOSTS` (default: this machine's names), so a DNS-rebinding page cannot
  reach it under a name it controls. The mode is logged as a warning at start and shown in `/health`.

Without either setting nothing changes: no listening beyond loopback without a token, and a token when one is set.
Without a token the `Host` header is always checked (DNS rebinding), a `Sec-Fetch-Site: cross-site` request without an
allowed origin is refused, and a write with a body must be JSON or YAML (`write_type_allowed`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _words(value: str | None) -> tuple[str, ...]:
    return tuple(w.strip() for w in (value or "").split(",") if w.strip())


def _origin(value: str) -> str:
    origin = value.strip().rstrip("/").lower()
    if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
        raise ValueError(f"OPEVA_CORS_ORIGINS: {value!r} is not an origin like http://ui.lab:5173")
    return origin


def _network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"OPEVA_OPEN_NETWORKS: {value!r} is not a network like 10.20.0.0/16") from None


def _this_host() -> tuple[str, ...]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return tuple(sorted(n for n in names if n))


@dataclass(frozen=True)
class Access:
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    open_networks: tuple[Network, ...] = ()
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls, token: str | None, env: Mapping[str, str] | None = None) -> Access:
        env = os.environ if env is None else env
        return cls.build(
            token,
            _words(env.get("OPEVA_CORS_ORIGINS")),
            _words(env.get("OPEVA_OPEN_NETWORKS")),
            _words(env.get("OPEVA_ALLOWED_HOSTS")),
        )

    @classmethod
    def build(
        cls,
        token: str | None,
        cors_origins: Iterable[str] = (),
        open_networks: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> Access:
        """From the settings' text; ValueError names the setting of a malformed entry."""
        return cls(
            token=token or None,
            cors_origins=tuple(_origin(o) for o in cors_origins),
            open_networks=tuple(_network(n) for n in open_networks),
            allowed_hosts=tuple(h.lower() for h in allowed_hosts) or _this_host(),
        )

    @property
    def mode(self) -> str:
        if self.open_networks:
            return "open-networks" if self.token is None else "token-or-open-networks"
        return "token" if self.token else "loopback-only"

    def describe(self) -> dict[str, Any]:
        """For /health and the start-up log: how the API is protected."""
        return {
            "mode": self.mode,
            "token": self.token is not None,
            "openNetworks": [str(n) for n in self.open_networks],
            "corsOrigins": list(self.cors_origins),
        }

    def may_listen_on(self, is_loopback: bool) -> bool:
        return is_loopback or self.token is not None or bool(self.open_networks)

    def in_open_network(self, client: str | None) -> bool:
        if not client or not self.open_networks:
            return False
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(ip in net for net in self.open_networks)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """A browser's Origin: listed, or the API's own (same-origin pages such as /ui)."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.cors_origins:
            return True
        return host is not None and origin.split("://", 1)[-1] == host.strip().lower()

    def host_allowed(self, host: str | None) -> bool:
        """The Host header, when the API answers without a token beyond loopback: never a name a web page chose."""
        if not host:
            return False
        name = host.strip().lower()
        if name.startswith("["):  # [IPv6]:port
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:  # name:port
            name = name.rsplit(":", 1)[0]
        if name == "localhost" or name in self.allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def write_type_allowed(method: str, content_type: str | None, has_body: bool) -> bool:
    """A write's body is JSON or YAML: never text/plain or a form, the types a web page may send cross-site without
    asking first. No Content-Type is accepted (command-line clients); a browser sending one without it also sends
    an Origin, checked before this."""
    if method not in WRITE_METHODS or not has_body or content_type is None:
        return True
    main = content_type.split(";")[0].strip().lower()
    return "/" in main and main.endswith(("json", "yaml"))
