"""What a spec declares around its benchmark, as the agent's steps (docs/protocol.md, "Steps").

    once per host, before the baseline   register the exit steps; setup commands; start the service
    before every measured run            [stop + start the service, wait until ready]; reset; warm-up
    once per host, at the end            stop the service; teardown commands (the agent runs them
                                         whenever it stops, and after a crash at its next start)

Every measured run of every phase (baseline, search, confirm, verify) goes through the same
steps, so the arms of a comparison are measured alike: when the run restarts its service for a
knob that takes effect only at listen() or process start (controller/timing.py), it restarts it
before the original's runs too, and a warmed-up, long-running server is never compared with a
fresh one. Steps run as the benchmark does: no shell, bounded, as the user who asked; the reset
and the warm-up in the benchmark's folder (benchmark_cwd), the others where the agent runs (the
setup may be what makes that folder).
"""

from __future__ import annotations

from controller.errors import AgentError
from controller.spec import Command, Service, TuningSpec

EXIT_KEY = "workload"
SETUP_REQUEST_MARGIN_S = 30.0


def _step(what: str, command: Command, timeout: float, cwd: str | None) -> dict:
    step = {"what": what, "cmd": command, "timeout": timeout}
    if cwd:
        step["cwd"] = cwd
    return step


def _start(service: Service) -> list[dict]:
    steps = [_step(f"{service.name} start", service.start, service.timeout, None)]
    if service.ready:
        steps.append({"what": f"{service.name} ready", "wait_tcp": service.ready, "timeout": service.timeout})
    return steps


def _stop(service: Service) -> dict:
    return _step(f"{service.name} stop", service.stop, service.timeout, None)


def restart_steps(spec: TuningSpec) -> list[dict]:
    """The service stopped and started again (it listens anew), waiting until it is ready."""
    return [_stop(spec.service), *_start(spec.service)] if spec.service is not None else []


def before_each_run(spec: TuningSpec, restart: bool) -> list[dict]:
    """Steps before every measured run: the service restarted (when ``restart``), the reset, the warm-up."""
    steps = restart_steps(spec) if restart else []
    if spec.reset is not None:
        steps.append(_step("reset", spec.reset, spec.step_timeout, spec.benchmark_cwd))
    if spec.warmup is not None:
        steps.append(_step("warm-up", spec.warmup, spec.step_timeout, spec.benchmark_cwd))
    return steps


def at_exit(spec: TuningSpec) -> list[dict]:
    """What undoes the run's setup on a host: the service stopped, then each teardown command."""
    steps = [_stop(spec.service)] if spec.service is not None else []
    return steps + [_step(f"teardown {i + 1}", c, spec.step_timeout, None) for i, c in enumerate(spec.teardown)]


def at_start(spec: TuningSpec) -> list[dict]:
    """Once per host before the baseline: each setup command, then the service started."""
    steps = [_step(f"setup {i + 1}", c, spec.step_timeout, None) for i, c in enumerate(spec.setup)]
    return steps + (_start(spec.service) if spec.service is not None else [])


def has_steps(spec: TuningSpec) -> bool:
    return bool(spec.setup or spec.teardown or spec.reset or spec.warmup or spec.service)


def prepare_host(host, spec: TuningSpec) -> list[dict]:
    """Register the exit steps, then run the setup and start the service on one host (one request:
    a no-op command after the setup steps). Raises AgentError naming the step that failed; the
    exit steps are registered first, so whatever the setup left behind is undone in any case."""
    exits = at_exit(spec)
    if exits:
        host.request("on_exit", {"key": EXIT_KEY, "steps": exits})
    steps = at_start(spec)
    if not steps:
        return []
    budget = sum(float(s["timeout"]) for s in steps) + SETUP_REQUEST_MARGIN_S
    result = host.request("run", {"cmd": ["true"], "timeout": 10.0, "before": steps}, timeout=budget)
    if result.get("before_failed"):
        raise AgentError(f"could not prepare the workload: {result['before_failed']['message']}", host.name,
                         "OSError")
    return result.get("before") or []


def step_failure(result: dict) -> str | None:
    """Why a measured run did not start: the message of the step that failed, if one did."""
    failed = result.get("before_failed")
    return None if not failed else failed.get("message") or "a step before the benchmark failed"
