"""Spec parsing and validation, the generation hash, and reading spec files safely."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from controller.spec import (
    MAX_SPEC_BYTES,
    SpecError,
    is_spec_file,
    load_spec_file,
    name_from_stem,
    parse_document,
    parse_memory,
    parse_text,
)

from .factories import doc, manifest


def rejection(document) -> str:
    with pytest.raises(SpecError) as err:
        parse_document(document, "job.yaml")
    return str(err.value)


def text_rejection(text, fmt: str = "yaml") -> str:
    with pytest.raises(SpecError) as err:
        parse_text(text, "job.yaml", fmt)
    return str(err.value)


# ---- strictness -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "document, field",
    [
        ({**doc(), "extra": 1}, "extra"),
        (doc(imagee="x"), "spec.imagee"),
        ({**doc(), "metadata": {"name": "job", "namespace": "x"}}, "metadata.namespace"),
        (doc(resources={"cpu": 2}), "spec.resources.cpu"),
        (doc(backoff={"initial": 1}), "spec.backoff.initial"),
        (doc(failurePolicy=[{"exitCode": [1], "action": "FailJob"}]), "spec.failurePolicy.0.exitCode"),
    ],
    ids=["top", "spec", "metadata", "resources", "backoff", "failure-rule"],
)
def test_unknown_field_is_rejected_by_name(document, field):
    assert f"{field}: unknown field" in rejection(document)


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"backoffLimit": "3"}, "spec.backoffLimit"),
        ({"suspend": "yes"}, "spec.suspend"),
        ({"args": "--config x"}, "spec.args"),
        ({"env": {"SEED": 42}}, "spec.env.SEED"),
        ({"activeDeadlineSeconds": 1.5}, "spec.activeDeadlineSeconds"),
        ({"restartPolicy": "Always"}, "spec.restartPolicy"),
        ({"interruptionPolicy": "Retry"}, "spec.interruptionPolicy"),
        ({"failurePolicy": [{"exitCodes": [1], "action": "Retry"}]}, "spec.failurePolicy.0.action"),
        ({"resources": {"cpus": 0}}, "spec.resources.cpus"),
        ({"backoffLimit": -1}, "spec.backoffLimit"),
        ({"image": ""}, "spec.image"),
        ({"configFile": "../secrets.yaml"}, "spec.configFile"),
        ({"configFile": "/etc/passwd"}, "spec.configFile"),
        ({"env": {"1BAD": "x"}}, "spec.env"),
        ({"secretEnv": {"1BAD": "token"}}, "spec.secretEnv"),
        ({"secretEnv": {"TOKEN": "../specs/other.yaml"}}, "spec.secretEnv.TOKEN"),
        ({"secretEnv": {"TOKEN": "team/token"}}, "spec.secretEnv.TOKEN"),
        ({"secretEnv": {"TOKEN": ".hidden"}}, "spec.secretEnv.TOKEN"),
        ({"secretEnv": {"TOKEN": ""}}, "spec.secretEnv.TOKEN"),
        ({"secretEnv": {"TOKEN": 7}}, "spec.secretEnv.TOKEN"),
        ({"mountSpecs": "yes"}, "spec.mountSpecs"),
        ({"backoff": {"initialSeconds": 1e12}}, "spec.backoff.initialSeconds"),
        ({"backoff": {"maxSeconds": 10**9}}, "spec.backoff.maxSeconds"),
        ({"terminationGracePeriodSeconds": 10**9}, "spec.terminationGracePeriodSeconds"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_wrong_type_or_value_is_rejected_by_field(spec, field):
    assert f"{field}:" in rejection(doc(**spec))


@pytest.mark.parametrize(
    "document, field",
    [
        ({k: v for k, v in doc().items() if k != "spec"}, "spec"),
        ({**doc(), "spec": {"args": ["x"]}}, "spec.image"),
        ({**doc(), "metadata": {}}, "metadata.name"),
        ({**doc(), "apiVersion": "batch/v1"}, "apiVersion"),
        ({**doc(), "kind": "CronJob"}, "kind"),
    ],
    ids=["no-spec", "no-image", "no-name", "api-version", "kind"],
)
def test_missing_or_foreign_required_field_is_rejected_by_name(document, field):
    assert f"{field}:" in rejection(document)


@pytest.mark.parametrize("name", ["Job", "job_1", "-job", "job-", "a" * 64, "jöb", ""])
def test_name_must_be_a_dns_label(name):
    assert "metadata.name" in rejection(doc(name))


@pytest.mark.parametrize("name", ["a", "job-1", "9lives", "a" * 63])
def test_dns_label_names_are_accepted(name):
    assert parse_document(doc(name)).name == name


def test_reserved_opeva_labels_are_rejected():
    assert "opeva.job" in rejection(doc(labels={"opeva.job": "other", "team": "x"}))


def test_label_values_must_be_strings():
    assert "metadata.labels.seed" in rejection(doc(labels={"seed": 42}))


def test_every_problem_is_reported_at_once():
    message = rejection(doc(imagee="x", backoffLimit="3"))
    assert ("spec.imagee" in message, "spec.backoffLimit" in message) == (True, True)


def test_integer_cpus_are_accepted_as_float():
    assert manifest(resources={"cpus": 2}).spec.resources.cpus == 2.0


def test_backoff_limit_defaults_follow_restart_policy():
    assert (
        manifest().spec.effective_backoff_limit,
        manifest(restartPolicy="OnFailure").spec.effective_backoff_limit,
        manifest(restartPolicy="OnFailure", backoffLimit=7).spec.effective_backoff_limit,
    ) == (0, 3, 7)


def test_contract_example_spec_is_accepted():
    m = parse_document(
        doc(
            "ppo-seed-42",
            labels={"experiment": "citylearn"},
            command=["python", "run.py"],
            args=["--config", "/data/configs/ppo.yaml"],
            env={"SEED": "42"},
            workingDir="/app",
            configFile="configs/ppo.yaml",
            resources={"cpus": 2, "memory": "4Gi", "gpus": 1},
            restartPolicy="Never",
            backoffLimit=0,
            activeDeadlineSeconds=86400,
            ttlSecondsAfterFinished=None,
            suspend=False,
            priority=0,
            network=None,
            mlflow={"experiment": "citylearn", "runName": "ppo-42"},
            logCapture=True,
        )
    )
    assert (m.name, m.spec.resources.memory_bytes) == ("ppo-seed-42", 4 * 2**30)


def test_a_document_that_is_not_a_mapping_is_rejected():
    assert "must be a mapping" in rejection(["apiVersion", "kind"])


# ---- text formats ---------------------------------------------------------------------------------------------
def test_yaml_text_is_parsed():
    assert parse_text(yaml.safe_dump(doc("from-yaml"))).name == "from-yaml"


def test_json_text_is_parsed():
    assert parse_text(json.dumps(doc("from-json")), fmt="json").name == "from-json"


def test_utf8_bytes_are_parsed():
    assert parse_text(yaml.safe_dump(doc("from-bytes")).encode()).name == "from-bytes"


def test_json_syntax_error_says_json():
    assert "cannot parse JSON" in text_rejection('{"apiVersion": ', "json")


def test_yaml_syntax_error_says_yaml():
    assert "cannot parse YAML" in text_rejection("spec: [unclosed\n")


def test_multi_document_yaml_is_rejected():
    two = yaml.safe_dump(doc("a")) + "---\n" + yaml.safe_dump(doc("b"))
    assert "2 documents" in text_rejection(two)


def test_trailing_document_separator_is_one_document():
    assert parse_text(yaml.safe_dump(doc("one")) + "---\n").name == "one"


@pytest.mark.parametrize("text", ["", "   \n", "---\n", "# only a comment\n", b""], ids=repr)
def test_empty_file_is_rejected_as_empty(text):
    assert "empty file" in text_rejection(text)


def test_binary_garbage_is_rejected():
    assert "binary content" in text_rejection(bytes(range(256)) * 4)


def test_non_utf8_text_is_rejected():
    assert "not UTF-8" in text_rejection("name: caf\u00e9\n".encode("latin-1"))


def test_yaml_scalar_document_is_rejected():
    assert "must be a mapping" in text_rejection("just a string\n")


# ---- the generation hash --------------------------------------------------------------------------------------
BASE = {"args": ["--seed", "1"], "env": {"A": "1", "B": "2"}, "resources": {"cpus": 1.5, "memory": "1Gi"}}


def generation(**spec) -> str:
    return manifest(**{**BASE, **spec}).generation


def test_generation_is_stable_across_key_order():
    forward = doc(**BASE)
    backward = {k: forward[k] for k in reversed(list(forward))}
    backward["spec"] = {k: forward["spec"][k] for k in reversed(list(forward["spec"]))}
    backward["spec"]["env"] = {"B": "2", "A": "1"}
    assert parse_document(backward).generation == parse_document(forward).generation


def test_generation_is_stable_across_yaml_and_json():
    from_json = parse_text(json.dumps(doc(**BASE)), fmt="json")
    assert from_json.generation == parse_text(yaml.safe_dump(doc(**BASE))).generation


@pytest.mark.parametrize(
    "defaults",
    [
        {"restartPolicy": "Never"},
        {"env": {"A": "1", "B": "2"}},
        {"terminationGracePeriodSeconds": 30},
        {"backoff": {"initialSeconds": 10, "maxSeconds": 300}},
        {"interruptionPolicy": "Restart"},
        {"failurePolicy": []},
        {"logCapture": True},
        {"init": True},
        {"secretEnv": {}},
        {"mountSpecs": False},
        {"resources": {"cpus": 1.5, "memory": "1Gi", "gpus": None}},
    ],
    ids=lambda d: next(iter(d)),
)
def test_generation_ignores_explicit_defaults(defaults):
    assert generation(**defaults) == generation()


@pytest.mark.parametrize(
    "control",
    [
        {"suspend": True},
        {"runId": "r2"},
        {"priority": 9},
        {"ttlSecondsAfterFinished": 60},
        {"queue": "gpu"},
    ],
    ids=lambda d: next(iter(d)),
)
def test_generation_ignores_control_fields(control):
    assert generation(**control) == generation()


def test_a_variable_has_one_source():
    message = rejection(doc(env={"TOKEN": "plain"}, secretEnv={"TOKEN": "token"}))
    assert "set in both env and secretEnv: TOKEN" in message


def test_secret_env_names_files_and_changes_the_generation_but_holds_no_value():
    m = manifest(secretEnv={"MLFLOW_TRACKING_TOKEN": "mlflow-token"})
    assert m.spec.secretEnv == {"MLFLOW_TRACKING_TOKEN": "mlflow-token"}
    assert m.generation != manifest().generation  # a different file is a different definition
    assert manifest(secretEnv={"MLFLOW_TRACKING_TOKEN": "other"}).generation != m.generation


def test_generation_ignores_labels():
    assert manifest(labels={"team": "grid"}, **BASE).generation == manifest(**BASE).generation


@pytest.mark.parametrize(
    "change",
    [
        {"image": "busybox:1.36"},
        {"args": ["--seed", "2"]},
        {"env": {"A": "1", "B": "3"}},
        {"command": ["sh"]},
        {"resources": {"cpus": 2.0, "memory": "1Gi"}},
        {"workingDir": "/app"},
        {"configFile": "c.yaml"},
        {"init": False},
    ],
    ids=lambda d: next(iter(d)),
)
def test_generation_changes_with_the_run_definition(change):
    assert generation(**change) != generation()


def test_generation_changes_with_the_name():
    assert manifest("other", **BASE).generation != manifest(**BASE).generation


def test_generation_ignores_the_explicit_effective_backoff_limit():
    assert generation(backoffLimit=0) == generation()


# ---- memory quantities ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, size",
    [
        ("4Gi", 4 * 2**30),
        ("512Mi", 512 * 2**20),
        ("512M", 512 * 10**6),
        ("1G", 10**9),
        ("1Ki", 1024),
        ("1K", 1000),
        ("2Ti", 2 * 2**40),
        ("1000000", 1_000_000),
        ("1.5Gi", 3 * 2**29),
        (" 256 Mi ", 256 * 2**20),
        ("100b", 100),
        (12345, 12345),
        # Docker's lowercase suffixes are binary, as `docker run --memory` reads them
        ("1k", 1024),
        ("512m", 512 * 2**20),
        ("4g", 4 * 2**30),
        ("2gb", 2 * 2**30),
        ("64MB", 64 * 2**20),
    ],
)
def test_parse_memory(value, size):
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["", "Gi", "4 GiB", "-1Gi", "four", "4gi"])
def test_parse_memory_rejects_non_quantities(value):
    with pytest.raises(ValueError):
        parse_memory(value)


def test_memory_must_be_positive():
    assert "spec.resources.memory" in rejection(doc(resources={"memory": "0Mi"}))


def test_bad_memory_is_reported_on_its_field():
    assert "spec.resources.memory" in rejection(doc(resources={"memory": "lots"}))


# ---- which files are specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rel, is_spec",
    [
        ("job.yaml", True),
        ("job.yml", True),
        ("job.json", True),
        ("team/sub/job.yaml", True),
        (".job.yaml", False),
        (".git/job.yaml", False),
        ("team/.hidden/job.yaml", False),
        ("job.yaml~", False),
        (".job.yaml.swp", False),
        ("job.yaml.swp", False),
        ("job.swx", False),
        ("#job.yaml#", False),
        (".#job.yaml", False),
        ("job.yaml.tmp", False),
        ("job.tmp", False),
        ("job.txt", False),
        ("README.md", False),
        ("job.yaml.bak", False),
        ("job", False),
    ],
)
def test_is_spec_file(rel, is_spec):
    assert is_spec_file(Path(rel)) is is_spec


@pytest.mark.parametrize(
    "stem, name",
    [("My_Job.yaml", "my-job"), ("ok.yaml", "ok"), ("__.yaml", "invalid-spec"), ("a" * 80 + ".yaml", "a" * 63)],
)
def test_name_from_stem_is_a_dns_label(stem, name):
    assert name_from_stem(Path(stem)) == name


def test_failure_rule_without_a_matcher_is_rejected():
    assert "spec.failurePolicy.0" in rejection(doc(failurePolicy=[{"action": "FailJob"}]))


# ---- reading files --------------------------------------------------------------------------------------------
@pytest.fixture
def specs(tmp_path: Path) -> Path:
    d = tmp_path / "specs"
    d.mkdir()
    return d


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def test_load_spec_file_reads_a_valid_file(specs):
    loaded = load_spec_file(write(specs / "team" / "a.yaml", yaml.safe_dump(doc("alpha"))), specs)
    assert (loaded.name, loaded.error, loaded.manifest.name) == ("alpha", None, "alpha")


def test_load_spec_file_reads_json_by_suffix(specs):
    assert load_spec_file(write(specs / "a.json", json.dumps(doc("alpha"))), specs).name == "alpha"


def test_load_spec_file_error_names_the_file_and_field(specs):
    loaded = load_spec_file(write(specs / "a.yaml", yaml.safe_dump(doc("alpha", imagee="x"))), specs)
    assert (loaded.name, loaded.manifest, loaded.error.startswith("a.yaml: "), "spec.imagee" in loaded.error) == (
        "alpha",
        None,
        True,
        True,
    )


def test_load_spec_file_unparseable_file_is_recorded_under_its_stem(specs):
    loaded = load_spec_file(write(specs / "Broken_File.yaml", "spec: [unclosed\n"), specs)
    assert (loaded.name, loaded.manifest, "cannot parse YAML" in loaded.error) == ("broken-file", None, True)


def test_load_spec_file_refuses_a_symlink_out_of_the_folder(specs, tmp_path):
    outside = write(tmp_path / "outside.yaml", yaml.safe_dump(doc("sneaky")))
    (specs / "link.yaml").symlink_to(outside)
    loaded = load_spec_file(specs / "link.yaml", specs)
    assert (loaded.name, loaded.manifest, "outside the specs folder" in loaded.error) == ("link", None, True)


def test_load_spec_file_follows_a_symlink_inside_the_folder(specs):
    write(specs / "real" / "a.yaml", yaml.safe_dump(doc("alpha")))
    (specs / "alias.yaml").symlink_to(specs / "real" / "a.yaml")
    assert load_spec_file(specs / "alias.yaml", specs).name == "alpha"


def test_load_spec_file_refuses_a_50_mb_file_without_reading_it(specs):
    big = specs / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(50 * 1024 * 1024)
    loaded = load_spec_file(big, specs)
    assert (loaded.name, loaded.manifest, f"limited to {MAX_SPEC_BYTES}" in loaded.error) == ("big", None, True)


def test_load_spec_file_reports_non_utf8(specs):
    loaded = load_spec_file(write(specs / "latin.yaml", "name: caf\u00e9\n".encode("latin-1")), specs)
    assert (loaded.name, "not UTF-8" in loaded.error) == ("latin", True)


def test_load_spec_file_reports_binary_garbage(specs):
    loaded = load_spec_file(write(specs / "noise.yaml", os.urandom(4096) + b"\x00"), specs)
    assert (loaded.name, "binary content" in loaded.error) == ("noise", True)


def test_load_spec_file_reports_an_empty_file(specs):
    assert "empty file" in load_spec_file(write(specs / "empty.yaml", ""), specs).error


def test_load_spec_file_reports_a_directory(specs):
    (specs / "dir.yaml").mkdir()
    assert "not a regular file" in load_spec_file(specs / "dir.yaml", specs).error


def test_load_spec_file_reports_a_vanished_file(specs):
    assert "cannot read" in load_spec_file(specs / "gone.yaml", specs).error


def test_load_spec_file_reports_a_dangling_symlink(specs):
    (specs / "dangling.yaml").symlink_to(specs / "nowhere.yaml")
    assert "cannot read" in load_spec_file(specs / "dangling.yaml", specs).error


def test_deeply_nested_json_is_an_invalid_spec_not_a_crash():
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_text("[" * 100_000 + "]" * 100_000, "deep.json", "json")


def test_deeply_nested_yaml_is_an_invalid_spec_not_a_crash():
    with pytest.raises(SpecError):
        parse_text("[" * 100_000 + "]" * 100_000, "deep.yaml", "yaml")


def test_a_symlink_loop_is_an_invalid_spec(tmp_path):
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    loaded = load_spec_file(tmp_path / "loop.yaml", tmp_path)
    assert loaded.manifest is None and "symlink loop" in loaded.error


def test_generation_of_a_spec_without_init_is_what_it_was_before_init_existed():
    """Specs written before `spec.init` existed keep their generation, so an upgrade reruns nothing (the value is
    what the controller computed for BASE before the field was added)."""
    assert manifest(**BASE).generation == "b484f1f77886a15f"
