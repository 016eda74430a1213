"""A fleet of connected agents. Results are data: each host yields a value or an error,
and one host failing never hides the others."""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from controller.errors import AgentError, AgentGone, HostError, NoPython, SudoPasswordRequired, TunefleetError
from controller.fleet.client import AgentClient
from controller.fleet.deploy import EXIT_NO_PAYLOAD, EXIT_NO_PYTHON, Payload, agent_command, build_payload, upload_command
from controller.fleet.inventory import HostSpec
from controller.fleet.transport import SSHTransport, Transport
from node_agent import protocol


@dataclass
class ConnectOptions:
    connect_timeout: float = 5.0
    accept_new_host_keys: bool = False
    idle_timeout: float = 900.0  # the agent restores and exits after this long without a request
    knobs: tuple[str, ...] = ()  # described in hello
    workers: str = "threads"  # "ray": each host's session lives in a Ray actor (see ray_hosts.py)


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
    """Start the agent over a transport (uploading the payload if this hash is new), say hello."""
    options = options or ConnectOptions()
    payload = build_payload()
    if sudo is None:
        sudo = transport.user != "root"
    command = agent_command(payload, sudo=sudo, python=python, idle_timeout=options.idle_timeout)
    uploaded = False
    for attempt in range(2):
        agent = AgentClient(transport.start(command), name)
        try:
            facts = agent.request("hello", {"knobs": list(options.knobs)}, timeout=30.0)
        except AgentGone as e:
            status = agent.exit_status()
            agent.abandon()
            if status == EXIT_NO_PAYLOAD and attempt == 0:
                _upload(transport, payload, name)
                uploaded = True
                continue
            raise _explain_start_failure(name, status, agent.stderr_tail(), e) from None
        except AgentError:
            agent.abandon()  # e.g. another run's agent holds this host: leave it alone
            raise
        if facts.get("protocol") != protocol.PROTOCOL_VERSION:
            agent.close()
            raise HostError(f"agent speaks protocol {facts.get('protocol')}, controller {protocol.PROTOCOL_VERSION}", name)
        return Host(name, spec, transport, agent, facts, uploaded)
    raise HostError("the agent payload vanished right after upload", name)


def _upload(transport: Transport, payload: Payload, name: str) -> None:
    rc, _, err = transport.run(upload_command(payload), stdin=payload.data, timeout=60.0)
    if rc != 0:
        raise HostError(f"cannot upload the agent ({len(payload.data)} bytes): {err.strip() or f'exit {rc}'}", name)


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
    transport = SSHTransport(spec, connect_timeout=options.connect_timeout,
                             accept_new_host_keys=options.accept_new_host_keys)
    try:
        return start_agent(spec.name, transport, sudo=spec.sudo, python=spec.python, options=options, spec=spec)
    except BaseException:
        transport.close()
        raise


@dataclass
class Outcome:
    """What one host gave back: a value, or an error."""

    name: str
    value: Any = None
    error: TunefleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Fleet:
    hosts: dict[str, Host] = field(default_factory=dict)
    failed: dict[str, TunefleetError] = field(default_factory=dict)

    @classmethod
    def connect(cls, specs: Iterable[HostSpec], options: ConnectOptions | None = None) -> "Fleet":
        options = options or ConnectOptions()
        specs = list(specs)

        if options.workers == "ray":
            from controller.fleet.ray_hosts import connect_ray_host, init_ray

            init_ray()

        def one(spec: HostSpec) -> Host:
            if options.workers == "ray":
                return connect_ray_host(spec, options)
            return connect_host(spec, options)

        fleet = cls()
        for out in _fan_out(one, {s.name: s for s in specs}):
            if out.ok:
                fleet.hosts[out.name] = out.value
            else:
                fleet.failed[out.name] = out.error
        return fleet

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def map(self, fn: Callable[[Host], Any], names: Iterable[str] | None = None) -> dict[str, Outcome]:
        """Run fn on every (or the named) host concurrently; errors come back as data."""
        chosen = {n: self.hosts[n] for n in (names if names is not None else self.hosts)}
        return {o.name: o for o in _fan_out(fn, chosen)}

    def shared_kernels(self) -> dict[str, list[str]]:
        return shared_kernels({n: h.facts for n, h in self.hosts.items()})

    def drop(self, name: str, error: TunefleetError, keep: bool = False) -> None:
        host = self.hosts.pop(name, None)
        self.failed[name] = error
        if host is not None:
            try:
                host.close(keep=keep)
            except Exception:
                pass

    def close(self, keep: bool = False) -> dict[str, Outcome]:
        """Say bye to every agent (each restores its originals unless keep)."""
        outcomes = self.map(lambda h: h.close(keep=keep))
        self.hosts.clear()
        return outcomes

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def round_trip_ms(host, n: int = 20) -> float:
    """Median of n ping round trips over the host's open agent channel, in ms."""
    import statistics
    import time

    times = []
    for _ in range(n):
        t = time.perf_counter()
        host.request("ping")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def shared_kernels(facts: dict[str, dict]) -> dict[str, list[str]]:
    """boot_id -> host names, for every kernel that more than one host runs on."""
    by_boot: dict[str, list[str]] = {}
    for name, f in facts.items():
        if f.get("boot_id"):
            by_boot.setdefault(f["boot_id"], []).append(name)
    return {b: names for b, names in by_boot.items() if len(names) > 1}


def _fan_out(fn: Callable[[Any], Any], items: dict[str, Any]) -> list[Outcome]:
    if not items:
        return []
    with cf.ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix="fleet") as pool:
        futures = {pool.submit(fn, item): name for name, item in items.items()}
        outcomes = []
        for fut, name in futures.items():
            try:
                outcomes.append(Outcome(name, value=fut.result()))
            except TunefleetError as e:
                e.host = e.host or name
                outcomes.append(Outcome(name, error=e))
            except Exception as e:  # a bug or an unexpected library error: still data, with context
                outcomes.append(Outcome(name, error=HostError(f"{type(e).__name__}: {e}", name)))
    return outcomes
