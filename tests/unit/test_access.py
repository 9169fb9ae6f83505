"""Who may call the API without a token, and from which web origins (api/access.py): pure rules, no I/O."""

from __future__ import annotations

import pytest

from api.access import Access


def access(**env: str) -> Access:
    return Access.from_env(None, {"OPEVA_ALLOWED_HOSTS": "opeva-vm,opeva-vm.lab", **env})


def test_nothing_is_opened_by_default():
    a = access()
    assert a.mode == "loopback-only" and not a.may_listen_on(is_loopback=False)
    assert not a.in_open_network("10.0.0.5") and a.describe()["corsOrigins"] == []
    assert Access.from_env("t", {}).mode == "token"


@pytest.mark.parametrize(
    ("client", "inside"),
    [("10.20.3.4", True), ("10.21.0.1", False), ("127.0.0.1", False), ("::1", False), ("nonsense", False)],
)
def test_open_networks(client, inside):
    a = access(OPEVA_OPEN_NETWORKS="10.20.0.0/16")
    assert a.mode == "open-networks" and a.may_listen_on(is_loopback=False)
    assert a.in_open_network(client) is inside


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://ui.lab:5173", None, True),
        ("HTTP://UI.LAB:5173/", None, True),
        ("http://ui.lab:5174", None, False),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # the API's own pages
    ],
)
def test_origins(origin, host, allowed):
    assert access(OPEVA_CORS_ORIGINS="http://ui.lab:5173").origin_allowed(origin, host) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.20.0.7:8000", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("opeva-vm.lab:8000", True),
        ("rebound.evil.example:8000", False),
        (None, False),
    ],
)
def test_hosts_a_web_page_cannot_choose(host, allowed):
    assert access().host_allowed(host) is allowed


@pytest.mark.parametrize(
    "env", [{"OPEVA_OPEN_NETWORKS": "lab"}, {"OPEVA_CORS_ORIGINS": "ui.lab"}, {"OPEVA_CORS_ORIGINS": "http://a/b"}]
)
def test_malformed_settings_are_refused(env):
    with pytest.raises(ValueError):
        access(**env)
