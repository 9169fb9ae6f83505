"""Hostile input: authentication, path traversal in every path parameter, oversized and malformed bodies, binding."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from api.app import create_app
from api.server import check_bind, start_in_thread

# Every operation with a path parameter, written with {} for it.
PATH_OPS = [
    ("GET", "/jobs/{}"),
    ("PUT", "/jobs/{}"),
    ("DELETE", "/jobs/{}"),
    ("GET", "/jobs/{}/events"),
    ("GET", "/jobs/{}/progress"),
    ("GET", "/jobs/{}/result"),
    ("GET", "/jobs/{}/logs"),
    ("POST", "/jobs/{}/stop"),
    ("POST", "/jobs/{}/resume"),
    ("POST", "/jobs/{}/rerun"),
    ("GET", "/status/{}"),
    ("GET", "/result/{}"),
    ("GET", "/progress/{}"),
    ("GET", "/logs/{}"),
    ("POST", "/stop/{}"),
    ("GET", "/job-info/{}"),
]
ALL_OPS = PATH_OPS + [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("POST", "/run-simulation"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/no-such-endpoint"),
]
TRAVERSALS = [
    "..",
    "%2e%2e",
    "..%2F..%2Fsecret",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret",
    "%2Fetc%2Fpasswd",
    "..%5C..%5Csecret",
    "..%252F..%252Fsecret",
    "x%00y",
    "%00",
    "j1%2F..%2F..%2Fsecret",
    "~root",
    ".secret",
    "-",
    "a" * 64,
    "J1",
    "%20j1",
    "j1%0A",
]
RAW_PATHS = [
    "/jobs/../../secret",
    "/jobs//etc/passwd",
    "/status/../../../etc/passwd",
    "/logs//etc/passwd",
    "/jobs/j1/../../../secret/logs",
    "/job-info/..%2F..%2F..%2Fsecret",
]


def raw_request(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """Send `path` byte for byte: HTTP clients normalise `..`, an attacker's does not."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


@pytest.fixture
def outside(folder, tmp_path):
    """Files just outside the data folder that a traversal would reach; the test checks they stay untouched."""
    (tmp_path / "secret").write_text("TOP-SECRET\n")
    (tmp_path / "secret.yaml").write_text("TOP-SECRET: 1\n")
    folder.status("j1")
    folder.spec("j1")
    folder.job_file("j1", "logs/j1.log", "ok\n")
    return tmp_path


def listing(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "data" not in p.parts)


# ---- path traversal ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,template", PATH_OPS)
def test_path_parameters_cannot_leave_the_data_folder(api, outside, method, template):
    before = listing(outside)
    for evil in TRAVERSALS:
        body = (
            b'{"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": "j1"}, "spec": {"image": "x"}}'
            if method == "PUT"
            else None
        )
        status, content, headers = raw_request(
            api.url, method, template.format(evil), body, {"Content-Type": "application/json"} if body else None
        )
        assert 400 <= status < 500, (template, evil, status, content)
        assert b"TOP-SECRET" not in content
        assert headers.get("content-type", "").startswith("application/json")
        assert json.loads(content)["detail"], (template, evil)
    assert listing(outside) == before


def test_raw_dot_dot_paths_never_match_a_job(api, outside):
    for path in RAW_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE"):
            status, content, _ = raw_request(api.url, method, path)
            assert 400 <= status < 500 and b"TOP-SECRET" not in content, (method, path, status)
            assert json.loads(content)["detail"]
    assert (outside / "secret").read_text() == "TOP-SECRET\n"


def test_invalid_name_message_says_what_a_name_is(api):
    r = api.client.get("/jobs/My_Job")
    assert r.status_code == 422 and "DNS-1123" in r.json()["detail"] and "'My_Job'" in r.json()["detail"]


def test_spec_file_recorded_outside_the_specs_folder_is_ignored(api, outside):
    """A status.json whose specFile climbs out of the specs folder must not lead a write there."""
    api.folder.status("j2", specFile="../../secret.yaml")
    assert api.client.post("/jobs/j2/stop").status_code == 404
    assert api.client.delete("/jobs/j2").status_code == 404
    assert (outside / "secret.yaml").read_text() == "TOP-SECRET: 1\n"


# ---- authentication ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [(m, p.format("j1")) for m, p in ALL_OPS])
def test_with_a_token_every_endpoint_but_health_needs_it(auth_api, token, method, path):
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {token}x"},
    ):
        with httpx.Client(base_url=auth_api.url, timeout=10) as anon:
            r = anon.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path, headers)
        assert r.json()["detail"] and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_with_a_token_the_right_one_opens_the_api(auth_api, token):
    auth_api.folder.spec("j1")
    assert auth_api.client.get("/jobs/j1").status_code == 200
    with httpx.Client(base_url=auth_api.url, timeout=10) as anon:
        r = anon.get("/jobs/j1", headers={"Authorization": f"bearer {token}"})  # the scheme is case-insensitive
        assert r.status_code == 200
        assert anon.get("/health").status_code == 200


def test_a_request_without_a_token_is_refused_before_its_body_is_read(auth_api):
    with httpx.Client(base_url=auth_api.url, timeout=10) as anon:
        r = anon.put("/jobs/j1", content=b"x" * (5 * 1024 * 1024))
    assert r.status_code == 401


def test_without_a_token_no_header_is_needed(api):
    api.folder.spec("j1")
    with httpx.Client(base_url=api.url, timeout=10) as anon:
        assert anon.get("/jobs/j1").status_code == 200
        assert anon.get("/docs").status_code == 200


# ---- bodies ------------------------------------------------------------------------------------------------------
def test_body_over_the_cap_is_413(small_api):
    big = b"# " + b"x" * 2000 + b"\n"
    r = small_api.client.put("/jobs/j1", content=big)
    assert r.status_code == 413 and "limit is 1024" in r.json()["detail"]
    r = small_api.client.post("/run-simulation", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert list(small_api.folder.specs.iterdir()) == []


def test_chunked_body_over_the_cap_is_413(small_api):
    def chunks():
        for _ in range(100):
            yield b"x" * 100

    r = small_api.client.put("/jobs/j1", content=chunks())
    assert r.status_code == 413 and r.json()["detail"]


def test_body_just_under_the_cap_is_accepted(small_api):
    text = "apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1}\nspec: {image: busybox}\n"
    text += "#" * (1024 - len(text) - 1) + "\n"
    assert len(text) == 1024
    assert small_api.client.put("/jobs/j1", content=text).status_code == 201


def test_default_cap_is_one_mebibyte(api):
    r = api.client.put("/jobs/j1", content=b"#" * (1024 * 1024 + 1))
    assert r.status_code == 413


@pytest.mark.parametrize(
    "body,ctype,words",
    [
        (b"", "application/yaml", "empty"),
        (b"apiVersion: [unclosed", "application/yaml", "cannot parse YAML"),
        (b"{not json", "application/json", "cannot parse JSON"),
        (b"[1, 2]", "application/json", "mapping"),
        (b"just a string", "application/yaml", "mapping"),  # text/plain and others: 415 (tests/api/test_attacks.py)
        (b"\x00\x01\x02binary", "application/yaml", "binary"),
        (b"\xff\xfe not utf-8", "application/yaml", "UTF-8"),
        (b"a: 1\n---\nb: 2\n", "application/yaml", "documents"),
        (
            b"apiVersion: opeva/v2\nkind: Job\nmetadata: {name: j1}\nspec: {image: x}\n",
            "application/yaml",
            "apiVersion",
        ),
        (b"apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1}\nspec: {}\n", "application/yaml", "spec.image"),
        (
            b"apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1}\nspec: {image: x, resources: {cpus: -1}}\n",
            "application/yaml",
            "spec.resources.cpus",
        ),
        (
            b"apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1, labels: {opeva.job: x}}\nspec: {image: x}\n",
            "application/yaml",
            "reserved",
        ),
    ],
)
def test_malformed_spec_bodies_are_4xx_with_a_reason(api, body, ctype, words):
    for method, url in (("PUT", "/jobs/j1"), ("POST", "/jobs")):
        r = api.client.request(method, url, content=body, headers={"Content-Type": ctype})
        assert 400 <= r.status_code < 500 and words in r.json()["detail"], (method, r.status_code, r.text)
    assert list(api.folder.specs.iterdir()) == []


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null", b"\xff", b'"str"', b'{"config_path": ["a"]}'])
def test_malformed_run_simulation_bodies_are_4xx(api, body):
    r = api.client.post("/run-simulation", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json()["detail"], r.text


def test_bad_content_length_is_400(api):
    status, content, _ = raw_request(api.url, "PUT", "/jobs/j1", None, {"Content-Length": "abc"})
    assert 400 <= status < 500


def test_wrong_method_is_405_json(api):
    r = api.client.patch("/jobs/j1")
    assert r.status_code == 405 and "not allowed" in r.json()["detail"]


# ---- binding -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org", ""])
def test_other_addresses_need_a_token(host):
    with pytest.raises(ValueError, match="without an API token.*OPEVA_API_TOKEN"):
        check_bind(host, None)
    check_bind(host, "tok")


def test_start_refuses_a_public_address_without_a_token(folder):
    app = create_app(folder.root)
    with pytest.raises(ValueError, match="refusing to listen on '0.0.0.0'"):
        start_in_thread(app, "0.0.0.0", 0)


def test_start_reports_a_port_in_use(folder):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        with pytest.raises(OSError, match="could not listen"):
            start_in_thread(create_app(folder.root), "127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
