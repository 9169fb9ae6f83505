"""GitOps: the specs folder follows one ref of a git repository, switched whole from one commit to the next.

Layout, in DATA/.opeva/git/:
    repo.git/         a bare, shallow repository with one remote (`origin`); no tags, no submodules
    trees/<sha>/      one checkout per commit, complete before anyone looks at it (the last few are kept)
    specs             a symlink to trees/<sha>/<path>: the specs folder the controller scans. A new commit is applied
                      by writing a new symlink beside it and renaming it over this one (git-sync's flip), so a scan
                      sees the old tree or the new one, never half of each (the scanner resolves the link once per
                      scan: controller/specsource.py).
    source.json       what `opeva get source`, /health and GET /source show: repo, ref, last fetched / attempted /
                      applied commit, the last error, why a commit is held, the last 10 applied revisions.

Fetches run every period (jittered) and at once when `trigger()` is called (the webhook). A failed fetch keeps the
last applied commit and retries with a doubling backoff; nothing is removed from the desired state because a remote
is away. A commit that would remove every spec, or stop more than `git_max_stops` running jobs, is held (source.json
says why) unless `--git-allow-prune` or a `.opeva-allow-prune` file at the spec path of that commit allows it.

Why the `git` command and not a library: it is the fetch implementation every server is tested against (smart HTTP,
SSH with known_hosts, shallow fetches, credential headers), it is on every machine the controller runs on, and its
errors are the ones users can reproduce by hand. Credentials reach it through the environment (an HTTP header in
GIT_CONFIG_*, or GIT_SSH_COMMAND), never in the URL or the arguments, and are scrubbed from every message we keep.
"""

from __future__ import annotations

import base64
import os
import random
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from .settings import Settings
from .specsource import job_names
from .status import iso, utcnow
from .store import atomic_write_json, read_json

log = structlog.get_logger("opeva.git")

ALLOW_PRUNE_MARKER = ".opeva-allow-prune"
KEEP_TREES = 3  # the applied tree and the two before it: a scan that started just before a flip can finish
HISTORY = 10
MAX_BACKOFF = 300.0
GIT_TIMEOUT = 120.0


class GitError(Exception):
    """A git command failed; the message has no credentials in it."""


def source_dir(data_dir: Path) -> Path:
    return data_dir / ".opeva" / "git"


def read_source(data_dir: Path) -> dict[str, Any] | None:
    """source.json, or None when the folder does not follow a repository."""
    doc = read_json(source_dir(data_dir) / "source.json")
    return doc if isinstance(doc, dict) and doc.get("active") else None


def forget_source(data_dir: Path) -> None:
    """The folder no longer follows a repository (`opeva run` without --git): the API may write specs again."""
    path = source_dir(data_dir) / "source.json"
    doc = read_json(path)
    if isinstance(doc, dict) and doc.get("active"):
        atomic_write_json(path, {**doc, "active": False})


def public_url(url: str) -> str:
    """The URL without a user or password in it."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


@dataclass(frozen=True)
class GitOptions:
    url: str
    ref: str = "main"
    path: str = ""  # the specs folder inside the repository
    period: float = 30.0
    token_file: Path | None = None  # HTTP(S): "TOKEN" (sent as x-access-token) or "USER:PASSWORD"
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    allow_prune: bool = False
    max_stops: int = 10

    @classmethod
    def from_settings(cls, s: Settings) -> GitOptions:
        assert s.git_url
        return cls(
            url=s.git_url,
            ref=s.git_ref,
            path=s.git_path,
            period=s.git_period,
            token_file=s.git_token_file,
            ssh_key=s.git_ssh_key,
            known_hosts=s.git_known_hosts,
            allow_prune=s.git_allow_prune,
            max_stops=s.git_max_stops,
        )


@dataclass
class Candidate:
    """A fetched commit's checkout."""

    commit: str
    tree: Path
    specs: Path


class GitSource:
    """Fetches `ref` of the repository and flips DATA/.opeva/git/specs to each new commit that is safe to apply.

    `running()` says which jobs run now (to count the stops a commit would cause), `current()` which jobs the
    applied commit defines; `on_applied()` is called after each flip (the controller rescans at once).
    """

    def __init__(
        self,
        options: GitOptions,
        data_dir: Path,
        running: Callable[[], set[str]] | None = None,
        on_applied: Callable[[], None] | None = None,
        current: Callable[[], set[str]] | None = None,
    ):
        self.options = options
        self.root = source_dir(data_dir)
        self.repo = self.root / "repo.git"
        self.trees = self.root / "trees"
        self.link = self.root / "specs"
        self.running = running or set
        self.on_applied = on_applied or (lambda: None)
        self.current = current or (lambda: job_names(self.link))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sync at a time
        self.failures = 0
        self.state: dict[str, Any] = {}

    # ---- set-up ---------------------------------------------------------------------------------------------
    def prepare(self) -> Path:
        """The bare repository and the specs link exist (an empty tree until the first commit is applied)."""
        self.trees.mkdir(parents=True, exist_ok=True)
        if not (self.repo / "HEAD").exists():
            self._git("init", "--bare", "--quiet", str(self.repo), cwd=self.root, bare=False)
        self._git("config", "remote.origin.url", self.options.url)
        self._git("config", "submodule.recurse", "false")
        self._git("config", "gc.auto", "0")
        if not self.link.is_symlink():
            empty = self.trees / "empty"
            empty.mkdir(exist_ok=True)
            self._flip(empty)
        old = read_json(self.root / "source.json")
        self.state = old if isinstance(old, dict) else {}
        if self.state.get("repoURL") != public_url(self.options.url) or self.state.get("ref") != self.options.ref:
            self.state.pop("held", None)
        self.state.update(
            active=True,
            repoURL=public_url(self.options.url),
            ref=self.options.ref,
            path=self.options.path,
            periodSeconds=self.options.period,
        )
        self.state.setdefault("history", [])
        self._save()
        return self.link

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="git-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=GIT_TIMEOUT)

    def trigger(self) -> None:
        """Fetch now (a webhook said the repository changed)."""
        self._wake.set()

    # ---- provenance -----------------------------------------------------------------------------------------
    def provenance(self, resolved_root: str) -> dict[str, str] | None:
        """Repository, ref and commit of a scanned folder under trees/<sha>/, else None."""
        trees = str(self.trees) + os.sep
        if not resolved_root.startswith(trees):
            return None
        commit, _, inside = resolved_root[len(trees) :].partition(os.sep)
        if len(commit) < 40:
            return None
        return {"repoURL": public_url(self.options.url), "ref": self.options.ref, "commit": commit, "path": inside}

    # ---- the loop -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # an unexpected error (a full disk, say) must not end the loop
                self.failures += 1
                log.exception("git_sync_failed", failures=self.failures)
            if self.failures:
                wait = min(self.options.period * 2 ** (self.failures - 1), MAX_BACKOFF)
            else:
                wait = self.options.period * random.uniform(0.8, 1.2)
            self._wake.wait(wait)
            self._wake.clear()

    def sync(self) -> str | None:
        """One fetch, and the new commit applied if it is safe. Returns the applied commit; never raises."""
        with self._lock:
            self.state["lastAttemptAt"] = iso(utcnow())
            try:
                commit = self._fetch()
            except GitError as err:
                self.failures += 1
                retry = min(self.options.period * 2 ** (self.failures - 1), MAX_BACKOFF)
                self.state.update(lastError=str(err), lastErrorAt=iso(utcnow()), failures=self.failures)
                self.state["message"] = (
                    f"fetch failed {self.failures} time(s); keeping commit {self.state.get('appliedCommit') or 'none'}"
                    f", retrying in about {retry:.0f} s"
                )
                log.warning(
                    "git_fetch_failed", error=str(err), failures=self.failures, kept=self.state.get("appliedCommit")
                )
                self._save()
                return self.state.get("appliedCommit")
            if self.failures:
                log.info("git_fetch_recovered", after_failures=self.failures)
            self.failures = 0
            self.state.update(lastFetchedCommit=commit, lastFetchedAt=iso(utcnow()), failures=0, lastError=None)
            self.state.pop("message", None)
            if commit != self.state.get("appliedCommit") or self.link.resolve() != self._specs_in(commit).resolve():
                self._consider(commit)
            self._save()
            return self.state.get("appliedCommit")

    def _consider(self, commit: str) -> None:
        self.state["lastAttemptedCommit"] = commit
        try:
            cand = self._checkout(commit)
        except GitError as err:
            self.state.update(lastError=str(err), lastErrorAt=iso(utcnow()))
            log.warning("git_checkout_failed", commit=commit, error=str(err))
            return
        held = self._hold_reason(cand)
        if held:
            if (self.state.get("held") or {}).get("commit") != commit:
                log.warning("git_commit_held", commit=commit, reason=held)
                self.state["held"] = {"commit": commit, "reason": held, "since": iso(utcnow())}
            return
        self.state.pop("held", None)
        self._flip(cand.specs)
        now = iso(utcnow())
        self.state.update(appliedCommit=commit, appliedAt=now)
        self.state["history"] = ([{"commit": commit, "appliedAt": now}] + list(self.state.get("history") or []))[
            :HISTORY
        ]
        log.info("git_commit_applied", commit=commit, ref=self.options.ref)
        self._save()
        self.on_applied()
        self._prune_trees(keep=commit)

    def _hold_reason(self, cand: Candidate) -> str | None:
        """Why the commit must not be applied as it is, or None."""
        if self.options.allow_prune or (cand.specs / ALLOW_PRUNE_MARKER).exists():
            return None
        names = job_names(cand.specs)
        current = self.current()
        if current and not names:
            return (
                f"commit {cand.commit[:12]} removes every spec ({len(current)} now); not applied. Commit a "
                f"{ALLOW_PRUNE_MARKER} file at the spec path, or start with --git-allow-prune, to allow it"
            )
        stops = self.running() - names
        if len(stops) > self.options.max_stops:
            return (
                f"commit {cand.commit[:12]} would stop {len(stops)} running jobs (more than {self.options.max_stops}); "
                f"not applied. Commit a {ALLOW_PRUNE_MARKER} file at the spec path, raise --git-max-stops, or start "
                "with --git-allow-prune"
            )
        return None

    # ---- git ------------------------------------------------------------------------------------------------
    def _fetch(self) -> str:
        self._git(
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--no-recurse-submodules",
            "origin",
            f"+{self.options.ref}:refs/opeva/target",
            remote=True,
        )
        return self._git("rev-parse", "--verify", "refs/opeva/target^{commit}").strip()

    def _checkout(self, commit: str) -> Candidate:
        tree = self.trees / commit
        if not (tree / ".git").exists():
            if tree.exists():
                shutil.rmtree(tree)
            self._git("worktree", "prune")
            tmp = self.trees / f".{commit}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self._git("worktree", "add", "--quiet", "--detach", "--force", str(tmp), commit)
            self._git("worktree", "move", str(tmp), str(tree))
        specs = self._specs_in(commit)
        specs.mkdir(parents=True, exist_ok=True)  # a commit without the folder: no specs
        return Candidate(commit, tree, specs)

    def _specs_in(self, commit: str) -> Path:
        inside = self.options.path.strip("/")
        return self.trees / commit / inside if inside else self.trees / commit

    def _flip(self, target: Path) -> None:
        tmp = self.root / f".specs.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, self.link)  # one rename: the scanner sees the old tree or the new one

    def _prune_trees(self, keep: str) -> None:
        applied = [h["commit"] for h in self.state.get("history") or []][:KEEP_TREES]
        held = (self.state.get("held") or {}).get("commit")
        for tree in self.trees.iterdir():
            if tree.name in applied or tree.name in (keep, held, "empty"):
                continue
            shutil.rmtree(tree, ignore_errors=True)
        try:
            self._git("worktree", "prune")
        except GitError as err:
            log.warning("git_worktree_prune_failed", error=str(err))

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", GCM_INTERACTIVE="never")
        opts = self.options
        if opts.token_file is not None:
            secret = opts.token_file.read_text().strip()
            user, sep, password = secret.partition(":")
            basic = base64.b64encode((secret if sep else f"x-access-token:{secret}").encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        if opts.ssh_key is not None or opts.known_hosts is not None:
            ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
            if opts.ssh_key is not None:
                ssh += ["-i", str(opts.ssh_key), "-o", "IdentitiesOnly=yes"]
            if opts.known_hosts is not None:
                ssh += ["-o", f"UserKnownHostsFile={opts.known_hosts}"]
            env["GIT_SSH_COMMAND"] = " ".join(shlex.quote(a) for a in ssh)
        return env

    def _git(self, *args: str, cwd: Path | None = None, bare: bool = True, remote: bool = False) -> str:
        cmd = ["git", *(["--git-dir", str(self.repo)] if bare else []), *args]
        try:
            env = self._env() if remote else {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
            out = subprocess.run(
                cmd, cwd=cwd or self.root, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} timed out after {GIT_TIMEOUT:.0f} s") from None
        except OSError as err:
            raise GitError(f"cannot run git: {err.strerror or err}") from None
        if out.returncode != 0:
            text = (out.stderr or out.stdout).strip()
            if "could not read Username" in text or "Authentication failed" in text:
                text = "authentication failed (HTTP 401): check the token file (--git-token-file)"
            raise GitError(self._scrub(f"git {args[0]}: {text[-500:]}"))
        return out.stdout

    def _scrub(self, text: str) -> str:
        text = text.replace(self.options.url, public_url(self.options.url))
        if self.options.token_file is not None:
            try:
                secret = self.options.token_file.read_text().strip()
            except OSError:
                secret = ""
            for part in {secret, secret.partition(":")[2]} - {""}:
                text = text.replace(part, "***")
        return text

    def _save(self) -> None:
        atomic_write_json(self.root / "source.json", self.state)
