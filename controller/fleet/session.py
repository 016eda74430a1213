"""One host's session: the transport, the agent started over it, and the facts from hello.

Both executors build hosts from here (controller/fleet/executor.py in this process, the Ray
actors of controller/fleet/ray_hosts.py elsewhere), so neither needs the fleet module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.errors import AgentError, AgentGone, HostError, NoPython, SudoPasswordRequired
from controller.fleet.client import HEARTBEAT_EVERY, AgentClient
from controller.fleet.deploy import (
    EXIT_NO_PAYLOAD,
    EXIT_NO_PYTHON,
    EXIT_NOT_INSTALLED,
    INSTALL_PATH,
    Payload,
    agent_command,
    build_payload,
    install_command,
    upload_command,
)
from controller.fleet.inventory import HostSpec
from controller.fleet.options import ConnectOptions
from controller.fleet.transport import SSHTransport, Transport
from node_agent import protocol


@dataclass
class Host:
    """One connected host: its transport, its agent and the facts from hello."""

    name: str
    spec: HostSpec | None
    transport: Transport
    agent: AgentClient
    facts: dict
    uploaded: bool = False

    def request(self, op: str, args: dict | None = None, **kw) -> Any:
        return self.agent.request(op, args, **kw)

    def close(self, keep: bool = False) -> dict | None:
        try:
            return self.agent.close(keep=keep)
        finally:
            self.transport.close()


def start_agent(name: str, transport: Transport, *, sudo: bool | None = None, python: str | None = None,
                options: ConnectOptions | None = None, spec: HostSpec | None = None) -> Host:
    """Start the agent over a transport (as root uploading the payload if this hash is new), say hello.

    Through sudo the installed agent runs; one that is not this controller's build is refused
    with the way to upgrade it: installing is an explicit step, never a side effect of a run.
    """
    options = options or ConnectOptions()
    payload = build_payload()
    if sudo is None:
        sudo = transport.user != "root"
    command = agent_command(payload, sudo=sudo, python=python, idle_timeout=options.idle_timeout,
                            heartbeat_timeout=options.heartbeat_timeout)
    hello = {"knobs": list(options.knobs), "idle_timeout": options.idle_timeout,
             "heartbeat_timeout": options.heartbeat_timeout}
    uploaded = False
    for attempt in range(2):
        agent = AgentClient(transport.start(command), name, silence=options.heartbeat_timeout,
                            heartbeat_every=min(HEARTBEAT_EVERY, options.heartbeat_timeout / 3))
        try:
            facts = agent.request("hello", hello, timeout=30.0)
        except AgentGone as e:
            status = agent.exit_status()
            agent.abandon()
            if status == EXIT_NOT_INSTALLED:
                raise HostError(f"no tunefleet agent installed at {INSTALL_PATH} for sudo to run: "
                                "run `tunefleet install --hosts ...` once", name) from None
            if status == EXIT_NO_PAYLOAD and attempt == 0 and not sudo:
                _upload(transport, payload, name)
                uploaded = True
                continue
            raise _explain_start_failure(name, status, agent.stderr_tail(), e) from None
        except AgentError:
            agent.abandon()  # e.g. another run's agent holds this host: leave it alone
            raise
        if facts.get("protocol") != protocol.PROTOCOL_VERSION:
            agent.close()
            raise HostError(f"agent speaks protocol {facts.get('protocol')}, controller {protocol.PROTOCOL_VERSION}",
                            name)
        if sudo and facts.get("agent_hash") != payload.digest:
            agent.close()
            raise HostError(f"the agent installed at {INSTALL_PATH} is {str(facts.get('agent_hash'))[:16]}, "
                            f"this controller's is {payload.short}: run `tunefleet install --hosts ...`", name)
        return Host(name, spec, transport, agent, facts, uploaded)
    raise HostError("the agent payload vanished right after upload", name)


def _upload(transport: Transport, payload: Payload, name: str) -> None:
    rc, _, err = transport.run(upload_command(payload), stdin=payload.data, timeout=60.0)
    if rc != 0:
        raise HostError(f"cannot upload the agent ({len(payload.data)} bytes): {err.strip() or f'exit {rc}'}", name)


def install_agent(name: str, transport: Transport, password: str | None = None) -> str:
    """Install this controller's agent root-owned at INSTALL_PATH; returns how ("root", "sudo").

    As root directly; otherwise through the user's own sudo, once: `sudo -n` when it needs no
    password, else `sudo -S` with ``password`` as the first line of stdin (sudo reads it byte
    by byte, the rest is the payload). Raises SudoPasswordRequired when a password is needed
    and none was given.
    """
    payload = build_payload()
    if transport.user == "root":
        how, command, stdin = "root", install_command(payload), payload.data
    elif password is None:
        how, command, stdin = "sudo", install_command(payload, sudo="sudo -n"), payload.data
    else:
        how, command = "sudo", install_command(payload, sudo="sudo -k -S -p ''")
        stdin = password.encode() + b"\n" + payload.data
    rc, _, err = transport.run(command, stdin=stdin, timeout=60.0)
    if rc != 0 and ("password is required" in err or "a terminal is required" in err):
        raise SudoPasswordRequired("sudo asks for a password to install the agent", name)
    if rc != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        raise HostError(f"cannot install the agent at {INSTALL_PATH}: {last}", name)
    return how


def _explain_start_failure(name: str, status: int | None, stderr: str, cause: Exception) -> HostError:
    text = stderr.strip()
    if status == EXIT_NO_PYTHON:
        return NoPython("python3 not found on the host (install python3 >= 3.7; see deploy/bootstrap-node.sh)", name)
    if "password is required" in text or "a terminal is required" in text:
        return SudoPasswordRequired(
            "sudo asks for a password; install deploy/sudoers.d/tunefleet on the host "
            "or connect as root", name)
    if "not in the sudoers" in text or "not allowed to execute" in text:
        return SudoPasswordRequired(f"sudo refuses to run the agent: {text.splitlines()[-1]}", name)
    last = text.splitlines()[-1] if text else f"exit status {status}"
    return HostError(f"the agent did not start: {last}", name)


def connect_host(spec: HostSpec, options: ConnectOptions) -> Host:
    """SSH to one host and start its agent; the connection is closed again if the start fails."""
    if spec.become_user not in (None, "root"):
        # Ansible's become_user is for playbooks; sysctls under /proc/sys are written by root only.
        raise HostError(f"become_user is {spec.become_user!r}: the agent writes /proc/sys and runs as root "
                        "(through sudo -n for a non-root SSH user); drop ansible_become_user for this host", spec.name)
    transport = SSHTransport(spec, connect_timeout=options.connect_timeout,
                             accept_new_host_keys=options.accept_new_host_keys, ssh_config=options.ssh_config)
    try:
        return start_agent(spec.name, transport, sudo=spec.sudo, python=spec.python, options=options, spec=spec)
    except BaseException:
        transport.close()
        raise
