"""With Ray workers a round of evaluations is one actor call per actor: each host's apply, benchmark
with its streamed samples, parsing and metric aggregates run next to its session, side by side, and
the driver awaits the round's calls together. Counted where it happens: the calls the hosts' actor served for each."""

from __future__ import annotations

from tests.conftest import FLEET
from tests.e2e.test_ray_restart import KNOB, _value


def test_one_actor_call_per_round_for_the_hosts_an_actor_holds(inventory, monkeypatch):
    import ray

    from controller.fleet.executor import ThreadExecutor
    from controller.fleet.fleet import ConnectOptions, Fleet
    from controller.learn.evaluation import HostEvaluator, Recorder
    from controller.learn.search import SearchContext, random_search
    from controller.spec import TuningSpec

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = TuningSpec.from_dict({
        "workload_name": "calls", "reward_metric": "x", "reward_pattern": r"x=(\S+)",
        "benchmark_command": "sh -c 'sleep 1.2; echo x=1'", "benchmark_timeout": 30,
        "action_space": [{"param": KNOB, "min": 10, "max": 60}],
    })
    before = {n: _value(FLEET.ns(n)) for n in ("h1", "h2")}
    fleet = Fleet.connect([inventory.hosts["h1"], inventory.hosts["h2"]], ConnectOptions(knobs=(KNOB,), workers="ray"))
    executor = ThreadExecutor(2)
    try:
        assert not fleet.failed, fleet.failed
        served_before = ray.get(fleet.hosts["h1"].actor.handle.calls.remote())  # h1 and h2 share an actor
        recorder = Recorder()
        evaluators = {n: HostEvaluator(h, spec, recorder) for n, h in fleet.hosts.items()}
        ctx = SearchContext(spec=spec, evaluators=evaluators, originals=before, baseline_metrics={},
                            executor=executor, recorder=recorder, budget=6, log=lambda m: None)
        random_search(ctx)
        served = ray.get(fleet.hosts["h1"].actor.handle.calls.remote())
    finally:
        executor.shutdown()
        fleet.close()

    trials = recorder.trials
    assert len(trials) == 6 and all(t.ok for t in trials), [t.error for t in trials]
    # the samples streamed during the 1.2 s benchmark were gathered and aggregated in the actor
    assert all(t.samples >= 1 and t.aggregates for t in trials), [(t.samples, t.aggregates) for t in trials]
    new = {name: {k: v - served_before.get(name, {}).get(k, 0) for k, v in counts.items()
                  if v > served_before.get(name, {}).get(k, 0)} for name, counts in served.items()}
    # one actor call per round for the two hosts the actor holds (a batch of their evaluations,
    # run side by side), no request forwarded on the side; each host's evaluation function
    # shipped once, to the actor both hosts share
    assert new == {"h1": {"call": 3}, "h2": {"call": 3}, "*": {"install": 2, "batch": 3}}, new
    assert sum(t.host == "h1" for t in trials) == sum(t.host == "h2" for t in trials) == 3
    # the driver awaited the rounds on ObjectRefs: none of the executor's threads was ever started
    assert not executor._pool._threads
    assert {n: _value(FLEET.ns(n)) for n in ("h1", "h2")} == before
