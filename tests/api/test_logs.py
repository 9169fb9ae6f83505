"""Logs: whole file, byte offsets, tail, follow of a growing file, big files, the seed's /logs."""

from __future__ import annotations

import threading
import time

import httpx

LINES = "".join(f"line {i}\n" for i in range(1, 11))


def test_whole_log_with_next_offset(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", LINES)
    r = api.client.get("/jobs/j1/logs")
    assert r.status_code == 200 and r.text == LINES
    assert r.headers["X-Next-Offset"] == str(len(LINES)) and r.headers["content-type"].startswith("text/plain")


def test_offset_continues_where_the_last_call_ended(api):
    api.folder.status("j1")
    path = api.folder.job_file("j1", "logs/j1.log", "first\n")
    r1 = api.client.get("/jobs/j1/logs")
    with open(path, "a") as f:
        f.write("second\n")
    r2 = api.client.get("/jobs/j1/logs", params={"offset": r1.headers["X-Next-Offset"]})
    assert r2.text == "second\n" and r2.headers["X-Next-Offset"] == str(len("first\nsecond\n"))
    r3 = api.client.get("/jobs/j1/logs", params={"offset": r2.headers["X-Next-Offset"]})
    assert r3.text == "" and r3.headers["X-Next-Offset"] == r2.headers["X-Next-Offset"]


def test_offset_past_the_end_is_416(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", "abc")
    r = api.client.get("/jobs/j1/logs", params={"offset": 4})
    assert r.status_code == 416 and "past the end" in r.json()["detail"] and r.headers["X-Next-Offset"] == "3"


def test_tail(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", LINES)
    assert api.client.get("/jobs/j1/logs", params={"tail": 3}).text == "line 8\nline 9\nline 10\n"
    assert api.client.get("/jobs/j1/logs", params={"tail": 0}).text == ""
    assert api.client.get("/jobs/j1/logs", params={"tail": 100}).text == LINES


def test_tail_counts_a_last_line_without_newline(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", "a\nb\nc")
    assert api.client.get("/jobs/j1/logs", params={"tail": 2}).text == "b\nc"


def test_tail_and_offset_together(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", LINES)
    offset = LINES.index("line 9")
    assert api.client.get("/jobs/j1/logs", params={"tail": 5, "offset": offset}).text == "line 9\nline 10\n"


def test_tail_of_a_big_file_spanning_many_chunks(api):
    api.folder.status("j1")
    content = "".join(f"{i:09d}\n" for i in range(200_000))  # 2 MB
    api.folder.job_file("j1", "logs/j1.log", content)
    r = api.client.get("/jobs/j1/logs", params={"tail": 30_000})
    assert r.text == content[-300_000:]


def test_big_log_is_streamed_intact(api):
    api.folder.status("j1")
    chunk = ("x" * 1023 + "\n").encode()
    path = api.folder.job_file("j1", "logs/j1.log", chunk * (24 * 1024))  # 24 MiB
    size = path.stat().st_size
    received = 0
    with api.client.stream("GET", "/jobs/j1/logs") as r:
        assert r.headers["content-length"] == str(size)
        for part in r.iter_bytes():
            received += len(part)
    assert received == size


def test_no_log_yet_is_empty_not_an_error(api):
    api.folder.spec("j1")
    r = api.client.get("/jobs/j1/logs")
    assert r.status_code == 200 and r.text == "" and r.headers["X-Next-Offset"] == "0"


def test_stdout_file_of_a_job_that_writes_its_own_log(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", "written by the job\n")
    api.folder.job_file("j1", "logs/j1.stdout.log", "captured stdout\n")
    assert api.client.get("/jobs/j1/logs").text == "written by the job\n"
    assert api.client.get("/jobs/j1/logs", params={"file": "stdout"}).text == "captured stdout\n"


def test_log_of_unknown_job_is_404(api):
    assert api.client.get("/jobs/ghost/logs").status_code == 404
    assert api.client.get("/logs/ghost").status_code == 404


def test_seed_logs_returns_the_whole_file(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "logs/j1.log", LINES)
    r = api.client.get("/logs/j1")
    assert r.status_code == 200 and r.text == LINES


def test_log_symlink_out_of_the_data_folder_is_refused(api, tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    api.folder.status("j1")
    api.folder.store.ensure_job_dirs("j1")
    (api.folder.store.log_path("j1")).symlink_to(tmp_path / "passwd")
    for url in ("/jobs/j1/logs", "/logs/j1", "/jobs/j1/logs?follow=true"):
        r = api.client.get(url)
        assert r.status_code == 409 and "root:x" not in r.text, url


# ---- follow ------------------------------------------------------------------------------------------------------
def test_follow_streams_a_growing_log_and_ends_when_the_job_finishes(api):
    folder = api.folder
    folder.status("j1", phase="Running")
    path = folder.job_file("j1", "logs/j1.log", "line 0\n")

    def job():
        for i in range(1, 6):
            time.sleep(0.2)
            with open(path, "a") as f:
                f.write(f"line {i}\n")
        folder.status("j1", phase="Succeeded", reason="Completed")
        with open(path, "a") as f:  # a line flushed right after the status changed must still arrive
            f.write("last words\n")

    writer = threading.Thread(target=job)
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    with api.client.stream("GET", "/jobs/j1/logs", params={"follow": "true"}, timeout=20) as r:
        assert r.status_code == 200 and r.headers["X-Start-Offset"] == "0"
        writer.start()
        for line in r.iter_lines():
            arrivals.append((time.monotonic() - start, line))
    writer.join()
    assert [line for _, line in arrivals] == [f"line {i}" for i in range(6)] + ["last words"]
    # lines arrive as they are written, not all at the end
    assert arrivals[1][0] < arrivals[-1][0] - 0.5


def test_follow_from_tail_of_a_finished_job_returns_and_ends(api):
    api.folder.status("j1", phase="Failed", reason="Error")
    api.folder.job_file("j1", "logs/j1.log", LINES)
    t0 = time.monotonic()
    r = api.client.get("/jobs/j1/logs", params={"follow": "true", "tail": 2})
    assert r.text == "line 9\nline 10\n" and time.monotonic() - t0 < 5


def test_follow_waits_for_the_log_file_to_appear(api):
    folder = api.folder
    folder.spec("j1")

    def controller():
        time.sleep(0.3)
        folder.status("j1", phase="Running")
        folder.job_file("j1", "logs/j1.log", "hello\n")
        time.sleep(0.3)
        folder.status("j1", phase="Stopped", reason="StoppedByUser")

    t = threading.Thread(target=controller)
    t.start()
    r = api.client.get("/jobs/j1/logs", params={"follow": "true"}, timeout=20)
    t.join()
    assert r.text == "hello\n"


def test_follow_client_disconnect_does_not_hurt_the_server(api):
    api.folder.status("j1", phase="Running")
    api.folder.job_file("j1", "logs/j1.log", "x\n")
    with (
        httpx.Client(base_url=api.url, timeout=5) as c,
        c.stream("GET", "/jobs/j1/logs", params={"follow": "true"}) as r,
    ):
        assert next(r.iter_lines()) == "x"
    assert api.client.get("/health").status_code == 200
