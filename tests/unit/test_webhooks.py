"""Webhook signatures (GitHub, Gitea, GitLab) and the credential-free URL: pure checks."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.webhooks import verify
from controller.gitsource import public_url

SECRET = "s3cret"
BODY = b'{"ref": "refs/heads/main"}'
DIGEST = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
OTHER = DIGEST[:-1] + ("1" if DIGEST[-1] == "0" else "0")  # one character off


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"x-hub-signature-256": f"sha256={DIGEST}"}, "github"),
        ({"x-gitea-signature": DIGEST}, "gitea"),
        ({"x-gitlab-token": SECRET}, "gitlab"),
        ({"x-hub-signature-256": f"sha256={'0' * 64}"}, None),
        ({"x-hub-signature-256": DIGEST}, None),  # without the sha256= prefix
        ({"x-gitea-signature": OTHER}, None),
        ({"x-gitlab-token": SECRET + "x"}, None),
        ({}, None),
    ],
)
def test_signatures(headers, sender):
    assert verify(SECRET, headers, BODY) == sender


def test_a_signature_of_another_body_fails():
    assert verify(SECRET, {"x-hub-signature-256": f"sha256={DIGEST}"}, BODY + b" ") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok@git.example.org/lab/x.git", "https://git.example.org/lab/x.git"),
        ("https://git.example.org/lab/x.git", "https://git.example.org/lab/x.git"),
        ("ssh://git@host/lab/x.git", "ssh://host/lab/x.git"),
        ("file:///srv/git/x.git", "file:///srv/git/x.git"),
    ],
)
def test_urls_are_shown_without_credentials(url, shown):
    assert public_url(url) == shown
