"""Secrets (controller/jobsecrets.py) read from real files, and where the secrets folder may live (wiring.job_view)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from controller.jobsecrets import MAX_SECRET_BYTES, SecretsFolder, SecretUnavailable, secret_value
from controller.settings import SettingsError
from controller.store import DataStore
from controller.wiring import job_view

VALUE = "tok-3f9a-not-for-logs"
NOBODY = 65534


@pytest.fixture
def folder(tmp_path: Path) -> SecretsFolder:
    d = tmp_path / "secrets"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    (d / "api-token").write_text(VALUE + "\n")
    return SecretsFolder(d)


@pytest.mark.parametrize(
    ("data", "value"),
    [(b"abc\n", "abc"), (b"abc\r\n", "abc"), (b"abc", "abc"), (b"a\nb\n", "a\nb"), (b"", ""), (b"\n\n", "\n")],
)
def test_one_trailing_newline_is_dropped(data, value):
    assert secret_value(data, "secret 'x'") == value


@pytest.mark.parametrize(("data", "why"), [(b"a\x00b", "NUL"), (b"\xff\xfe", "UTF-8")])
def test_a_value_no_environment_can_hold_is_refused(data, why):
    with pytest.raises(SecretUnavailable, match=why):
        secret_value(data, "secret 'x'")


def test_the_named_files_become_the_environment(folder):
    (folder.path / "db.password").write_text("pw")
    assert folder.environment({"TOKEN": "api-token", "DB": "db.password"}) == {"TOKEN": VALUE, "DB": "pw"}
    assert folder.environment({}) == {}


def _refusal(folder: SecretsFolder, name: str) -> str:
    with pytest.raises(SecretUnavailable) as err:
        folder.environment({"TOKEN": name})
    message = str(err.value)
    assert VALUE not in message and "TOKEN" in message and err.value.reason == "SecretUnavailable"
    return message


def test_a_missing_file_names_the_variable_and_the_file(folder):
    assert "there is no file" in _refusal(folder, "absent") and "absent" in _refusal(folder, "absent")


def test_a_link_a_fifo_or_a_big_file_is_never_read(folder, tmp_path):
    (tmp_path / "host").write_text("host file")
    (folder.path / "link").symlink_to(tmp_path / "host")
    (folder.path / "inner-link").symlink_to("api-token")  # even one inside the folder
    os.mkfifo(folder.path / "fifo")
    (folder.path / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (folder.path / "dir").mkdir()
    assert "symbolic link" in _refusal(folder, "link")
    assert "symbolic link" in _refusal(folder, "inner-link")
    assert "not a regular file" in _refusal(folder, "fifo")  # and the FIFO never blocks
    assert "bytes" in _refusal(folder, "big")
    assert "not a regular file" in _refusal(folder, "dir")


def test_an_unreadable_file_is_a_clear_refusal(tmp_path):
    """A file the controller's user may not read. Root reads every file, so under root the check runs in a forked
    child that has become `nobody` (the folder is its own, the file root's with mode 600)."""
    base = Path(tempfile.mkdtemp(dir="/tmp")) if os.geteuid() == 0 else tmp_path
    try:
        base.chmod(0o755)
        folder = SecretsFolder(base / "secrets")
        folder.ensure()
        (folder.path / "locked").write_text(VALUE)
        (folder.path / "locked").chmod(0o600 if os.geteuid() == 0 else 0)
        if os.geteuid() == 0:
            os.chown(folder.path, NOBODY, NOBODY)
        assert "cannot be read: Permission denied" in _refusal_as_nobody(folder, "locked")
    finally:
        if base != tmp_path:
            shutil.rmtree(base)


def _refusal_as_nobody(folder: SecretsFolder, name: str) -> str:
    if os.geteuid() != 0:
        return _refusal(folder, name)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, _refusal(folder, name).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def test_the_folder_must_be_a_real_folder_only_its_owner_writes(folder, tmp_path):
    link = SecretsFolder(tmp_path / "via-link")
    link.path.symlink_to(folder.path)
    assert "is a link or not a folder" in _refusal(link, "api-token")
    assert "does not exist" in _refusal(SecretsFolder(tmp_path / "nowhere"), "api-token")
    folder.path.chmod(0o777)
    assert "writable by others" in _refusal(folder, "api-token")


def test_ensure_creates_a_private_folder(tmp_path):
    secrets = SecretsFolder(tmp_path / "secrets")
    secrets.ensure()
    secrets.ensure()  # again: nothing to do
    assert secrets.path.is_dir() and secrets.path.stat().st_mode & 0o777 == 0o700


# ---- where the folder may live ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("specs", "secrets", "hidden", "shown"),
    [
        (None, "DATA/secrets", (".opeva", "secrets"), "specs"),
        (None, "DATA/.opeva/secrets", (".opeva",), "specs"),
        (None, "ELSEWHERE/secrets", (".opeva",), "specs"),
        ("DATA/lab/specs", "DATA/vault", (".opeva", "vault"), "lab/specs"),
        ("DATA/.opeva/git/specs", "DATA/secrets", (".opeva", "secrets"), None),  # a git checkout
        ("ELSEWHERE/specs", "DATA/secrets", (".opeva", "secrets"), None),
    ],
)
def test_what_jobs_never_see(tmp_path, specs, secrets, hidden, shown):
    def path(p: str) -> Path:
        return Path(p.replace("DATA", str(tmp_path / "data")).replace("ELSEWHERE", str(tmp_path / "else")))

    store = DataStore.open(tmp_path / "data", path(specs) if specs else None)
    assert job_view(store, path(secrets)) == (hidden, shown)
    assert (tmp_path / "data" / ".opeva" / "empty").is_dir()


@pytest.mark.parametrize("secrets", ["DATA", "DATA/jobs", "DATA/configs", "DATA/configs/secrets", "DATA/specs/s"])
def test_a_secrets_folder_a_job_or_the_api_reaches_is_refused(tmp_path, secrets):
    store = DataStore.open(tmp_path / "data")
    with pytest.raises(SettingsError, match="OPEVA_SECRETS_DIR"):
        job_view(store, Path(secrets.replace("DATA", str(tmp_path / "data"))))
