"""The one rule for files a job wrote (controller/jobfiles.py) and the archiver built on it, on real files."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from controller.archive import SKIPPED_NAME, write_archive
from controller.jobfiles import UnsafeFile, open_job_file, read_job_json
from controller.jobsecurity import network_refusal


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "data"
    (d / "jobs" / "j" / "outputs").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_text("host secret")
    return d


def test_a_plain_file_is_read(root):
    p = root / "jobs" / "j" / "outputs" / "a.txt"
    p.write_text("hello")
    with open_job_file(root, p) as f:
        assert f.read() == b"hello"
    assert open_job_file(root, root / "jobs" / "j" / "outputs" / "missing") is None


@pytest.mark.parametrize("kind", ["file-link", "folder-link", "relative-link-inside", "fifo", "setuid", "too-big"])
def test_anything_but_a_plain_regular_file_is_refused(root, tmp_path, kind):
    out = root / "jobs" / "j" / "outputs"
    target = out / "x"
    if kind == "file-link":
        target.symlink_to(tmp_path / "host" / "secret")
    elif kind == "folder-link":
        (out / "d").symlink_to(tmp_path / "host")
        target = out / "d" / "secret"
    elif kind == "relative-link-inside":
        (out / "real").write_text("inside")
        target.symlink_to("real")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "setuid":
        target.write_text("x")
        target.chmod(0o4755)
    else:
        target.write_bytes(b"x" * 100)
    with pytest.raises(UnsafeFile):
        open_job_file(root, target, max_bytes=10)


def test_paths_outside_the_root_are_refused(root, tmp_path):
    for path in (tmp_path / "host" / "secret", "jobs/../../host/secret", "/etc/passwd"):
        with pytest.raises(UnsafeFile):
            open_job_file(root, path)


def test_deep_json_is_refused_not_a_crash(root):
    p = root / "jobs" / "j" / "outputs" / "deep.json"
    p.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(UnsafeFile, match="nests deeper"):
        read_job_json(root, p)
    p.write_text('{"a": [1, {"b": 2}]}')
    assert read_job_json(root, p) == (True, {"a": [1, {"b": 2}]})


def test_the_archive_keeps_plain_files_and_skips_what_it_must_not_read(root, tmp_path):
    job = root / "jobs" / "j"
    (job / "outputs" / "model.bin").write_bytes(b"weights")
    (job / "outputs" / "escape").symlink_to(tmp_path / "host")
    os.mkfifo(job / "outputs" / "fifo")
    (job / "outputs" / "suid").write_text("#!/bin/sh\n")
    (job / "outputs" / "suid").chmod(0o4755)
    with open(job / "outputs" / "sparse", "wb") as f:
        f.truncate(50 * 1024 * 1024)
    buf = io.BytesIO()
    skipped = write_archive(root, job, "j", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("j/outputs/model.bin").read() == b"weights"
        assert members["j/outputs/escape"].issym()  # stored as a link, never followed
        assert "j/outputs/host" not in members and not any("secret" in n for n in members)
        assert not {"j/outputs/fifo", "j/outputs/suid", "j/outputs/sparse"} & set(members)
        assert all(m.mode & 0o7000 == 0 for m in members.values())
        assert f"j/{SKIPPED_NAME}" in members
    assert {s.split(":")[0] for s in skipped} == {"j/outputs/fifo", "j/outputs/suid", "j/outputs/sparse"}


@pytest.mark.parametrize(
    ("network", "allowed", "privileged", "refused"),
    [
        (None, (), False, False),
        ("none", (), False, False),
        ("bridge", (), False, False),
        ("lab", ("lab",), False, False),
        ("lab", (), False, True),
        ("host", (), False, True),
        ("container:x", (), False, True),
        ("host", (), True, False),
        ("default-net", (), False, False),
    ],
)
def test_network_allow_list(network, allowed, privileged, refused):
    assert (network_refusal(network, "default-net", allowed, privileged) is not None) == refused
