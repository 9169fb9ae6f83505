"""Attacks on the API from a web page, a job's files and a local user (issue 14), against a real uvicorn server.

Each test reproduces an attack that worked before the fix (see the issue for the numbers)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

SPEC = "apiVersion: opeva/v1\nkind: Job\nmetadata: {name: NAME}\nspec: {image: busybox}\n"


def spec(name: str) -> str:
    return SPEC.replace("NAME", name)


# ---- defect 3: cross-site requests -----------------------------------------------------------------------------
def test_a_web_page_cannot_create_a_job_with_a_simple_request(api):
    """A page's `fetch(..., {mode: 'no-cors'})`: text/plain, its own Origin. It used to get 201 and the job ran."""
    r = api.client.post(
        "/jobs", content=spec("evil"), headers={"Content-Type": "text/plain", "Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    r = api.client.post("/jobs", content=spec("evil"), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    r = api.client.post("/jobs", content=spec("evil"), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert not (api.folder.specs / "evil.yaml").exists()
    api.folder.spec("j1")
    for verb in ("stop", "rerun", "resume"):  # no body at all: the Origin is what gives the page away
        r = api.client.post(f"/jobs/j1/{verb}", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, verb
        r = api.client.post(f"/jobs/j1/{verb}", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403, verb
    assert "suspend" not in (api.folder.specs / "j1.yaml").read_text()


def test_dns_rebinding_reads_nothing(api):
    """A name the attacker controls resolving to 127.0.0.1: the browser sends Host: attacker.example."""
    api.folder.status("j1")
    for path in ("/jobs", "/jobs/j1", "/status/j1", "/jobs/j1/logs"):
        r = api.client.get(path, headers={"Host": "attacker.example:8000"})
        assert r.status_code == 403 and "attacker.example" in r.json()["detail"], path
        assert "j1" not in r.text
    assert api.client.get("/jobs", headers={"Host": "localhost:8000"}).status_code == 200


def test_the_api_own_origin_and_clients_without_origin_still_work(api):
    url = api.url
    r = api.client.put("/jobs/j2", content=spec("j2"), headers={"Content-Type": "application/yaml", "Origin": url})
    assert r.status_code == 201, r.text
    r = api.client.put("/jobs/j3", content=spec("j3"))  # the CLI and curl may send no Content-Type
    assert r.status_code == 201, r.text
    r = api.client.put("/jobs/j4", json=json.loads(json.dumps(_doc("j4"))))
    assert r.status_code == 201, r.text


def _doc(name: str) -> dict:
    return {"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"image": "busybox"}}


# ---- defect 8: tail reads from the end, capped -----------------------------------------------------------------
def test_tail_of_a_huge_sparse_log_without_newlines_is_quick(api):
    """A 20 GB sparse log cost 40 s per `tail=` request and blocked every endpoint."""
    api.folder.status("j1")
    path = api.folder.job_file("j1", "logs/j1.log", b"")
    with open(path, "r+b") as f:
        f.truncate(20 * 1024**3)
        f.seek(20 * 1024**3 - 6)
        f.write(b"last\n\n")
    started = time.monotonic()
    r = api.client.get("/jobs/j1/logs", params={"tail": "1000"}, timeout=30)
    assert r.status_code == 200
    assert time.monotonic() - started < 5
    assert r.text.endswith("last\n\n") and len(r.content) <= 64 * 1024 * 1024


# ---- defect 12: deeply nested JSON a job wrote -----------------------------------------------------------------
def test_deeply_nested_progress_is_a_clear_4xx(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "progress/progress.json", "[" * 100_000 + "]" * 100_000)
    api.folder.job_file("j1", "results/result.json", "[" * 5000 + "]" * 5000)
    for path in ("/jobs/j1/progress", "/progress/j1", "/jobs/j1/result", "/result/j1"):
        r = api.client.get(path)
        assert r.status_code == 409 and "nests deeper" in r.json()["detail"], (path, r.status_code, r.text[:200])


# ---- defect 7: log followers are capped, /health stays up ------------------------------------------------------
def test_log_followers_are_capped_and_health_answers(api):
    api.folder.status("j1", phase="Running")
    api.folder.job_file("j1", "logs/j1.log", "line\n")
    stop = threading.Event()
    statuses: list[int] = []

    def follower() -> None:
        try:
            with httpx.stream("GET", f"{api.url}/jobs/j1/logs?follow=true", timeout=30) as r:
                statuses.append(r.status_code)
                for _ in r.iter_bytes():
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            statuses.append(-1)

    threads = [threading.Thread(target=follower, daemon=True) for _ in range(80)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while len(statuses) < 80 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert statuses.count(429) == 80 - 64 and statuses.count(200) == 64, statuses
        assert api.client.get("/health", timeout=5).status_code == 200
    finally:
        stop.set()
        api.folder.status("j1", phase="Succeeded", reason="Completed")
        for t in threads:
            t.join(15)


def test_half_open_connections_are_closed_and_health_answers(api):
    """About 1,000 connections that never send a request used to hold a descriptor each for good."""
    from api.server import HEAD_TIMEOUT

    port = int(api.url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        for s in socks:
            s.settimeout(HEAD_TIMEOUT + 10)
        started = time.monotonic()
        closed = sum(1 for s in socks if s.recv(1) == b"")  # the server closes each one (EOF), none waits forever
        assert closed == len(socks) and time.monotonic() - started < HEAD_TIMEOUT + 10
        assert api.client.get("/health", timeout=5).status_code == 200
    finally:
        for s in socks:
            s.close()
