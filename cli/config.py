"""Where the API is and how to authenticate: flags, then the environment, then a small config file.

    --server URL  / $OPEVA_SERVER      / server: URL          (default http://127.0.0.1:8000)
    --token TOKEN / $OPEVA_API_TOKEN   / token: T or tokenFile: PATH

The config file is $OPEVA_CONFIG_FILE, else $XDG_CONFIG_HOME/opeva/config.yaml (~/.config/opeva/config.yaml).
($OPEVA_CONFIG is taken: it is the environment variable a job's container gets for its configFile.)
The variables are declared in `ClientSettings` (controller/settings.py); the config file is layered under them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from controller.settings import ClientSettings, SettingsError

from .errors import CliError

DEFAULT_SERVER = "http://127.0.0.1:8000"
CONFIG_KEYS = ("server", "token", "tokenFile")


class ConfigError(CliError):
    """The config file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Connection:
    server: str  # base URL, without a trailing slash
    token: str | None
    source: str  # where the server came from: "--server", "$OPEVA_SERVER", "config file PATH" or "default"
    config_file: Path


def client_settings() -> ClientSettings:
    try:
        return ClientSettings.from_env()
    except SettingsError as err:
        raise click.ClickException(f"bad setting: {err}") from None


def config_file_path(env: ClientSettings | None = None) -> Path:
    env = env or client_settings()
    if env.config_file:
        return env.config_file.expanduser()
    base = env.xdg_config_home or Path.home() / ".config"
    return base / "opeva" / "config.yaml"


def load_config(path: Path, required: bool = False) -> dict[str, Any]:
    """The config file as a mapping; {} when it does not exist (an error if $OPEVA_CONFIG_FILE names it)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} (from $OPEVA_CONFIG_FILE) does not exist") from None
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: cannot parse YAML: {str(err).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: expected a mapping with keys {', '.join(CONFIG_KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(CONFIG_KEYS)}"
        )
    for key in CONFIG_KEYS:
        if key in doc and doc[key] is not None and not isinstance(doc[key], str):
            raise ConfigError(f"config file {path}: {key} must be a string")
    return doc


def normalize_server(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def resolve(server: str | None, token: str | None) -> Connection:
    """The connection from flags (given here), the environment and the config file, in that order."""
    env = client_settings()
    path = config_file_path(env)
    config = load_config(path, required=env.config_file is not None)
    if server:
        url, source = server, "--server"
    elif env.server:
        url, source = env.server, "$OPEVA_SERVER"
    elif config.get("server"):
        url, source = config["server"], f"config file {path}"
    else:
        url, source = DEFAULT_SERVER, "default"
    if not token:
        token = env.api_token or config.get("token") or None
    if not token and config.get("tokenFile"):
        token_path = Path(config["tokenFile"]).expanduser()
        if not token_path.is_absolute():
            token_path = path.parent / token_path
        try:
            token = token_path.read_text().strip() or None
        except OSError as err:
            raise ConfigError(
                f"config file {path}: cannot read tokenFile {token_path}: {err.strerror or err}"
            ) from None
    return Connection(normalize_server(url), token, source, path)
