"""The `opeva` client commands where no server is needed: help, completion, local validation, clear errors when the
server is down, the config file, and `plan --data` against a data folder in a known state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.spec import parse_text
from controller.status import JobStatus, utcnow
from controller.store import DataStore

from .conftest import Cli, free_port

CLIENT_COMMANDS = ["apply", "get", "describe", "logs", "stop", "resume", "rerun", "delete", "wait", "plan"]


def spec_text(name: str, image: str = "busybox", labels: dict | None = None, **spec) -> str:
    metadata = {"name": name, **({"labels": labels} if labels else {})}
    doc = {"apiVersion": "opeva/v1", "kind": "Job", "metadata": metadata, "spec": {"image": image, **spec}}
    return yaml.safe_dump(doc, sort_keys=False)


def generation(text: str) -> str:
    return parse_text(text).generation


# ---- help and completion ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_has_help_with_examples(cli: Cli, command: str):
    result = cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Examples:" in result.stdout and f"opeva {command}" in result.stdout.split("Examples:")[1]


def test_top_level_help_lists_the_commands_and_documents_completion(cli: Cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in CLIENT_COMMANDS + ["run"]:
        assert f"  {command} " in result.stdout
    assert 'eval "$(_OPEVA_COMPLETE=bash_source opeva)"' in result.stdout


def test_shell_completion_script_and_command_names(cli: Cli):
    script = cli(env={"_OPEVA_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_opeva_completion" in script.stdout
    words = cli(env={"_OPEVA_COMPLETE": "bash_complete", "COMP_WORDS": "opeva de", "COMP_CWORD": "1"})
    assert words.returncode == 0
    assert {"plain,delete", "plain,describe"} <= set(words.stdout.split())


# ---- invalid input ---------------------------------------------------------------------------------------------
def test_server_down_says_which_server_and_how_to_start_one(cli: Cli):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["get"], ["describe", "x"], ["logs", "x"], ["wait", "x", "--for", "Succeeded"], ["stop", "x"]):
        result = cli(*args, "--server", url)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"cannot reach the OPEVA API at {url} (server from --server)" in result.stderr
        assert "opeva run" in result.stderr and "Traceback" not in result.stderr
    via_env = cli("get", env={"OPEVA_SERVER": url})
    assert via_env.returncode == 1 and "(server from $OPEVA_SERVER)" in via_env.stderr


def test_apply_of_a_missing_file_fails_clearly(cli: Cli, tmp_path: Path):
    result = cli("apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert f"error: {tmp_path / 'nope.yaml'}: no such file or directory" in result.stderr
    assert "nothing was applied" in result.stderr


def test_apply_reports_every_invalid_file_with_its_field_errors_and_sends_nothing(cli: Cli, tmp_path: Path):
    specs = tmp_path / "specs"
    (specs / "sub").mkdir(parents=True)
    (specs / "good.yaml").write_text(spec_text("good"))
    (specs / "typo.yaml").write_text(spec_text("typo", imagePolicy="Always"))
    (specs / "sub" / "no-image.json").write_text(
        json.dumps({"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": "Bad_Name"}, "spec": {}})
    )
    (specs / ".hidden.yaml").write_text("not: [a spec")  # ignored, as the controller ignores it
    # no server answers here: validation comes first, so the result cannot depend on one
    result = cli("apply", "-f", str(specs), "--server", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert f"error: {specs}/typo.yaml: spec.imagePolicy: unknown field" in result.stderr
    assert f"error: {specs}/sub/no-image.json: metadata.name: String should match pattern" in result.stderr
    assert "spec.image: Field required" in result.stderr
    assert "error: 2 invalid spec files of 3; nothing was applied" in result.stderr
    assert "cannot reach" not in result.stderr and result.stdout == ""


def test_apply_rejects_two_files_naming_one_job(cli: Cli, tmp_path: Path):
    (tmp_path / "a.yaml").write_text(spec_text("same"))
    (tmp_path / "b.yaml").write_text(spec_text("same", image="other"))
    result = cli("apply", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml"))
    assert result.returncode == 1
    assert "job 'same' is already defined by" in result.stderr and "nothing was applied" in result.stderr


def test_a_broken_config_file_is_named_with_the_problem(cli: Cli, tmp_path: Path):
    config = tmp_path / "opeva.yaml"
    config.write_text("server: http://x\nsecret: y\n")
    result = cli("get", env={"OPEVA_CONFIG_FILE": str(config)})
    assert result.returncode == 1
    assert f"config file {config}: unknown key(s) secret" in result.stderr
    missing = cli("get", env={"OPEVA_CONFIG_FILE": str(tmp_path / "absent.yaml")})
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_the_config_file_supplies_the_server(cli: Cli, tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "xdg" / "opeva" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"server: {url}\ntoken: t\n")
    result = cli("get")
    assert result.returncode == 1 and f"at {url} (server from config file {config})" in result.stderr


def test_usage_errors_of_plan_exit_1_so_that_2_only_means_changes(cli: Cli, tmp_path: Path):
    assert cli("plan", "--no-such-flag").returncode == 1
    assert cli("plan", str(tmp_path / "missing")).returncode == 1


# ---- plan, offline, against a known state -------------------------------------------------------------------------
def record(
    store: DataStore,
    name: str,
    phase: str,
    reason: str | None,
    gen: str | None,
    attempts: int = 1,
    run_id: str | None = None,
    labels: dict | None = None,
) -> None:
    now = utcnow()
    store.write_status(
        JobStatus(
            name=name,
            phase=phase,
            reason=reason,
            observedGeneration=gen,
            attempts=attempts,
            runId=run_id,
            labels=labels or {},
            submittedAt=now,
            updatedAt=now,
        )
    )


@pytest.fixture
def known_state(tmp_path: Path):
    """A data folder with records (written by the controller's own store) and a folder of specs to plan."""
    store = DataStore.open(tmp_path / "data")
    specs = tmp_path / "checkout"
    specs.mkdir()
    texts = {
        "new-job": spec_text("new-job"),
        "edited": spec_text("edited", args=["--epochs", "20"]),
        "same-done": spec_text("same-done"),
        "rerun-id": spec_text("rerun-id", runId="r2"),
        "suspended-running": spec_text("suspended-running", suspend=True),
        "resumed": spec_text("resumed"),
        "running-same": spec_text("running-same"),
    }
    for name, text in texts.items():
        (specs / f"{name}.yaml").write_text(text)
    (specs / "broken.yaml").write_text(spec_text("broken", imagee="typo"))
    (specs / ".draft.yaml").write_text(spec_text("draft"))  # hidden: not a spec
    (specs / "edited.yaml~").write_text("editor backup")  # not a spec
    gen = {name: generation(text) for name, text in texts.items()}
    record(store, "edited", "Succeeded", "Completed", "0000aaaa0000aaaa")
    record(store, "same-done", "Succeeded", "Completed", gen["same-done"])
    record(store, "rerun-id", "Failed", "Error", gen["rerun-id"], run_id="r1")
    record(store, "removed-running", "Running", "Started", "1111bbbb1111bbbb", attempts=2)
    record(store, "suspended-running", "Running", "Started", gen["suspended-running"])
    record(store, "resumed", "Stopped", "Suspended", gen["resumed"])
    record(store, "running-same", "Running", "Started", gen["running-same"])
    record(store, "old-gone", "Stopped", "SpecDeleted", "2222cccc2222cccc")
    return store.root, specs, gen


def test_plan_prints_what_the_controller_would_do_exactly(cli: Cli, known_state):
    data, specs, gen = known_state
    result = cli("plan", str(specs), "--data", str(data))
    assert result.stdout == (
        "NAME                ACTION      DETAIL\n"
        "broken              invalid     broken.yaml: spec.imagee: unknown field\n"
        f"edited              rerun       new generation {gen['edited']} (recorded 0000aaaa0000aaaa, Succeeded "
        "(Completed))\n"
        "new-job             start       new job\n"
        "old-gone            unchanged   Stopped (SpecDeleted); no spec, record kept\n"
        "removed-running     stop        spec removed; stops the running attempt 2, keeps the record\n"
        "rerun-id            rerun       new runId r2 (recorded r1, Failed (Error))\n"
        "resumed             start       suspend cleared; runs again as a new attempt (recorded Stopped (Suspended))\n"
        "running-same        unchanged   Running (Started), attempt 1\n"
        "same-done           unchanged   Succeeded (Completed)\n"
        "suspended-running   stop        suspended; stops the running attempt 1\n"
        "\n"
        "Plan: 2 to start, 2 to rerun, 2 to stop, 3 unchanged, 1 invalid.\n"
    )
    assert result.returncode == 1, "an invalid spec fails the plan"
    assert result.stderr == ""
    again = cli("plan", str(specs), "--data", str(data))
    assert again.stdout == result.stdout, "same state, same bytes"


def test_plan_exit_codes_changes_2_none_0(cli: Cli, known_state, tmp_path: Path):
    data, specs, _ = known_state
    (specs / "broken.yaml").unlink()
    assert cli("plan", str(specs), "--data", str(data)).returncode == 2
    # a checkout that matches what is recorded: nothing to do
    store = DataStore.open(tmp_path / "quiet-data")
    text = spec_text("done")
    record(store, "done", "Succeeded", "Completed", generation(text))
    record(store, "gone", "Failed", "Error", "3333dddd3333dddd")
    checkout = tmp_path / "quiet-checkout"
    checkout.mkdir()
    (checkout / "done.yaml").write_text(text)
    quiet = cli("plan", str(checkout), "--data", str(store.root))
    assert quiet.returncode == 0, quiet.stdout
    assert quiet.stdout == (
        "NAME   ACTION      DETAIL\n"
        "done   unchanged   Succeeded (Completed)\n"
        "gone   unchanged   Failed (Error); no spec, record kept\n"
        "\n"
        "Plan: 0 to start, 0 to rerun, 0 to stop, 2 unchanged, 0 invalid.\n"
    )


def test_plan_json_is_stable(cli: Cli, known_state):
    data, specs, gen = known_state
    result = cli("plan", str(specs), "--data", str(data), "-o", "json", "-l", "nothing=here")
    # a selector that matches no labels leaves only the file that cannot be read
    assert (
        result.stdout
        == json.dumps(
            {
                "changes": False,
                "items": [
                    {
                        "action": "invalid",
                        "detail": "broken.yaml: spec.imagee: unknown field",
                        "file": "broken.yaml",
                        "name": "broken",
                    }
                ],
                "summary": {"invalid": 1, "rerun": 0, "start": 0, "stop": 0, "unchanged": 0},
            },
            indent=2,
        )
        + "\n"
    )


def test_plan_writes_nothing(cli: Cli, tmp_path: Path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(spec_text("a"))
    data = tmp_path / "empty-data"
    data.mkdir()
    result = cli("plan", str(specs), "--data", str(data))
    assert result.returncode == 2 and "a      start    new job\n" in result.stdout
    assert list(data.iterdir()) == []
