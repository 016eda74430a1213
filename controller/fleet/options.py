"""How to connect to hosts: shared by the fleet, the session and both executors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ConnectOptions:
    connect_timeout: float = 5.0
    accept_new_host_keys: bool = False
    idle_timeout: float = 900.0  # the agent restores and exits after this long without a request
    heartbeat_timeout: float = 30.0  # ... and after this long without hearing from the controller
    knobs: tuple[str, ...] = ()  # described in hello
    workers: str = "threads"  # "ray" / "ray:K": host sessions live in Ray actors, K hosts each (see ray_hosts.py)
    ssh_config: str | None = None  # instead of ~/.ssh/config and /etc/ssh/ssh_config, like ssh -F
