"""The client commands of `opeva`: apply, get, describe, logs, stop, resume, rerun, delete, wait, plan.

Each talks to the API (`--server`/`--token`, `$OPEVA_SERVER`/`$OPEVA_API_TOKEN`, or the config file; see
`config.py`), except `plan --data DIR`, which reads a data folder directly. `register(main)` adds them to the
`opeva` group defined in `cli/main.py`.
"""

from __future__ import annotations

import click

from .apply import apply_cmd
from .control import delete_cmd, rerun_cmd, resume_cmd, stop_cmd
from .describe import describe_cmd
from .get import get_cmd
from .logs import logs_cmd
from .plan import plan_cmd
from .wait import wait_cmd

COMMANDS = (apply_cmd, get_cmd, describe_cmd, logs_cmd, stop_cmd, resume_cmd, rerun_cmd, delete_cmd, wait_cmd, plan_cmd)


EPILOG = """Client commands talk to the API at --server, $OPEVA_SERVER, `server:` in ~/.config/opeva/config.yaml
($OPEVA_CONFIG_FILE) or http://127.0.0.1:8000, with --token, $OPEVA_API_TOKEN or `token:` there.

\b
Shell completion (bash; zsh_source and fish_source likewise):
  eval "$(_OPEVA_COMPLETE=bash_source opeva)"
"""


def register(group: click.Group) -> None:
    """Add the client commands to the `opeva` group."""
    for command in COMMANDS:
        group.add_command(command)
    if not group.epilog:
        group.epilog = EPILOG
