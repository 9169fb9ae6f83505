"""What a job's container may do to the host: capabilities, privileges, user and network. Pure rules, no I/O.

A job image is not trusted. As root with Docker's default capabilities a job could leave a device node or a
setuid-root binary in its folders for any local user to use, and on the host's network it reached the API and the
MLflow UI on loopback. So every job runs with `no-new-privileges`, all capabilities dropped except a small allow-list
that grants no way to a new identity or a device, and only on networks the operator allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

# Kept from Docker's defaults: none of them creates devices, changes identity or file ownership, or sets setuid bits.
DEFAULT_CAPS = ("AUDIT_WRITE", "DAC_OVERRIDE", "KILL", "NET_BIND_SERVICE")
NO_NEW_PRIVILEGES = "no-new-privileges:true"
ALWAYS_ALLOWED_NETWORKS = ("none", "bridge")
PRIVILEGED_NETWORKS = ("host",)  # and container:NAME: both need --allow-host-network


def capabilities(spec_add: Iterable[str] | None) -> tuple[str, ...]:
    """The capabilities a job keeps: the allow-list plus those its spec asks for (with a reason, see spec.py)."""
    return tuple(sorted(set(DEFAULT_CAPS) | {c.upper().removeprefix("CAP_") for c in spec_add or ()}))


def network_refusal(
    network: str | None, default: str | None, allowed: Iterable[str], allow_privileged: bool
) -> str | None:
    """Why a job may not use `network` (None: it may). Allowed: none, bridge, the controller's default network, the
    names given to the controller; `host` and `container:NAME` only with the controller's explicit permission."""
    if network is None or network in ALWAYS_ALLOWED_NETWORKS or network == default or network in set(allowed):
        return None
    if network in PRIVILEGED_NETWORKS or network.startswith("container:"):
        if allow_privileged:
            return None
        return (
            f"spec.network {network!r} shares a network namespace with the host or another container; the controller "
            "allows it only when started with --allow-host-network (OPEVA_ALLOW_HOST_NETWORK=1)"
        )
    return (
        f"spec.network {network!r} is not allowed: use none, bridge"
        + (f", {default}" if default else "")
        + ", or a network the controller was given with --network-allowed (OPEVA_NETWORKS_ALLOWED)"
    )
