"""Evaluations of a benchmark that needs a partner (a spec's ``peer``, controller/pairs.py).

The client's evaluator measures the pair: before the client's run request (apply, steps,
benchmark: one round trip, as for any host) its server gets the same values in a request of its
own, with its service restarted first when a knob of the run takes effect only at listen(). A
knob left at the client's original goes to the server's own original, so the original arm of a
comparison is the original on both hosts. A server whose agent is gone fails the client's
evaluation (its partner is gone, not the client) and repeated failures leave the pair out.
"""

from __future__ import annotations

from controller import lifecycle, pairs
from controller.errors import AgentError, AgentGone, SpecError
from controller.learn.evaluation import Measure
from controller.spec import TuningSpec

LINK_TIMEOUT_S = 30.0


class PairMeasure(Measure):
    def __init__(self, spec: TuningSpec, before, server, server_before, own: dict[str, str], theirs: dict[str, str]):
        super().__init__(spec, before)
        self.server, self.server_before = server, list(server_before)
        self.own, self.theirs = own, theirs
        self.command = pairs.fill(spec.benchmark_command, pairs.address(server))
        self.timeout += sum(float(s["timeout"]) for s in self.server_before) + 30.0

    def _benchmark(self, host, out: dict, staged: dict | None) -> None:
        args = {"cmd": ["true"], "timeout": 10.0}
        if staged:
            args["apply"] = {"values": pairs.peer_values(staged["values"], self.own, self.theirs),
                             "bounds": staged["bounds"]}
        if self.server_before:
            args["before"] = self.server_before
        name = self.server.name
        try:
            result = self.server.request("run", args, timeout=self.timeout)
        except AgentGone as e:  # the partner is gone, not this host: a failed evaluation, not a lost agent
            raise AgentError(f"its partner {name} is lost: {e.message}", host.name, "OSError") from None
        except AgentError as e:
            raise AgentError(f"its partner {name}: {e.message}", host.name, e.etype) from None
        refused = (result.get("apply") or {}).get("refused") or {}
        if refused:
            why = "; ".join(f"{k}: {v.get('message', v)}" for k, v in refused.items())
            raise AgentError(f"its partner {name} refused: {why}", host.name, "ValidationError")
        if result.get("before_failed"):
            raise AgentError(f"its partner {name}: {result['before_failed'].get('message')}", host.name, "OSError")
        super()._benchmark(host, out, staged)


def set_up(spec: TuningSpec, fleet, originals: dict[str, dict[str, str]], restart: bool, log) -> tuple[dict, list[str]]:
    """Pairs the hosts and prepares them: the service (setup, start) on every server, the emulated
    link on every client. Returns ({client: PairMeasure}, [hosts left out, each said])."""
    if fleet.options is not None and fleet.options.workers != "threads":
        raise SpecError(f"{spec.workload_name!r} pairs hosts, which --workers {fleet.options.workers} cannot "
                        "do yet: use --workers threads")
    pairing = pairs.pair(spec, list(fleet.hosts))
    for host, why in pairing.left_out.items():
        log(f"{host} is left out of the run: {why}")
    log(f"pairs (client -> server): {pairing.describe()}")
    client_steps = lifecycle.before_each_run(spec, restart=False)
    server_steps = lifecycle.restart_steps(spec) if restart else []
    measures = {c: PairMeasure(spec, client_steps, fleet.hosts[s], server_steps, originals[c], originals[s])
                for c, s in pairing.pairs.items()}
    failed: dict[str, str] = {}
    for name, out in fleet.map(lambda h: lifecycle.prepare_host(h, spec), pairing.servers).items():
        if out.error is not None:
            failed[name] = out.error.message
    assert spec.peer is not None  # a paired run's spec has its peer
    if spec.peer.link is not None:
        link = spec.peer.link.model_dump()
        up = fleet.map(lambda h: h.request("link_up", {"peer": pairs.address(fleet.hosts[pairing.pairs[h.name]]),
                                                        **link}, timeout=LINK_TIMEOUT_S), list(pairing.pairs))
        failed.update({n: f"the emulated link: {o.error.message}" for n, o in up.items() if o.error is not None})
    dropped = []
    for client, server in pairing.pairs.items():
        reason = failed.get(client) or (f"its server {server}: {failed[server]}" if server in failed else None)
        if reason:
            log(f"dropping {client} from the run: {reason}")
            measures.pop(client)
            dropped.append(client)
    return measures, list(pairing.left_out) + dropped
