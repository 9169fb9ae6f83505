"""Settings: declared once, read from the environment, flags win, bad values name their variable; docs keep up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from controller.settings import ClientSettings, MlflowSettings, Settings, SettingsError, env_name

ROOT = Path(__file__).resolve().parents[2]
CLASSES = (Settings, MlflowSettings, ClientSettings)


def test_every_variable_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = {env_name(c, f) for c in CLASSES for f in c.model_fields} - set(re.findall(r"[A-Z][A-Z0-9_]+", readme))
    assert missing == set()


def test_variables_are_read_and_flags_win(monkeypatch, tmp_path):
    monkeypatch.setenv("OPEVA_WORKERS", "7")
    monkeypatch.setenv("OPEVA_POLL_SPECS", "yes")
    monkeypatch.setenv("OPEVA_NETWORK", "")  # empty is unset
    s = Settings.from_env(data_dir=tmp_path, resync_seconds=3.0, workers=None)
    assert (s.workers, s.poll_specs, s.default_network, s.resync_seconds, s.data_dir) == (7, True, None, 3.0, tmp_path)
    assert Settings.from_env(workers=2).workers == 2


@pytest.mark.parametrize(
    "var, value, problem",
    [
        ("OPEVA_WORKERS", "many", "integer"),
        ("OPEVA_POLL_SPECS", "perhaps", "boolean"),
        ("OPEVA_ARTIFACTS", "shred", "'keep', 'archive' or 'delete'"),
        ("OPEVA_RESYNC_SECONDS", "0", "greater than 0"),
        ("OPEVA_GPUS", "0,0", "names a device twice"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(monkeypatch, var, value, problem):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=f"{var}={value!r}") as err:
        Settings.from_env()
    assert problem in str(err.value)


def test_mapping_settings_ignore_the_process_environment(monkeypatch):
    monkeypatch.setenv("OPEVA_MLFLOW_EXPERIMENT", "from-process")
    assert MlflowSettings.from_mapping({}).experiment == "opeva"
    assert MlflowSettings.from_mapping({"OPEVA_MLFLOW_EXPERIMENT": "x"}).experiment == "x"
    with pytest.raises(SettingsError, match="OPEVA_MLFLOW_TIMEOUT='-1'"):
        MlflowSettings.from_mapping({"OPEVA_MLFLOW_TIMEOUT": "-1"})


def test_run_help_shows_each_flag_with_its_variable_and_default():
    out = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for flag, var in [
        ("--data", "OPEVA_DATA"),
        ("--workers", "OPEVA_WORKERS"),
        ("--mlflow-uri", "MLFLOW_TRACKING_URI"),
    ]:
        assert flag in out and var in out
    assert "default 4" in out


def test_a_bad_variable_stops_run_with_its_name(monkeypatch, tmp_path):
    monkeypatch.setenv("OPEVA_WORKERS", "many")
    result = CliRunner().invoke(main, ["run", "--data", str(tmp_path), "--no-api"])
    assert result.exit_code == 1 and "OPEVA_WORKERS='many'" in result.output


def test_a_bad_flag_is_a_usage_error_naming_it(tmp_path):
    result = CliRunner().invoke(main, ["run", "--data", str(tmp_path), "--no-api", "--memory", "lots"])
    assert result.exit_code == 2 and "--memory='lots'" in result.output
