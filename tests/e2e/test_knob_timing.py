"""A knob that takes effect only when a server listens again, measured with and without the restart.

net.core.somaxconn caps a listener's accept queue at listen(). The fleet starts at 128, and ab's
1000 clients at once overflow nginx's queue: their p99 is a 1 s SYN retransmit. A run that raises
somaxconn but never restarts nginx measures the queue nginx made at its start, so it must not
report a gain it could not have measured (the command line refuses such a spec; the library is
driven here to show why); with the restart before every measured run the gain appears.
"""

from __future__ import annotations

import pytest

from controller.catalog import Catalog, validate
from controller.errors import SpecError
from controller.fleet.fleet import ConnectOptions, Fleet
from controller.runs import RunDir
from controller.spec import TuningSpec
from controller.strategist.workloads import NGINX_PORT
from controller.tuner import RunOptions, tune

pytestmark = pytest.mark.fleet

SOMAXCONN = "net.core.somaxconn"


def burst(restart: str) -> TuningSpec:
    service = "tunefleet-service nginx"
    return TuningSpec.from_dict({
        "workload_name": f"nginx burst, restart {restart}", "reward_metric": "latency_p99_ms",
        "reward_goal": "minimize", "benchmark_timeout": 60, "baseline_repeats": 2,
        "benchmark_command": f"ab -q -r -n 4000 -c 1000 http://127.0.0.1:{NGINX_PORT}/",
        "setup": [f"{service} setup --port {NGINX_PORT} --workers 2"], "teardown": [f"{service} teardown"],
        "service": {"name": "nginx", "start": f"{service} start", "stop": f"{service} stop", "restart": restart},
        "action_space": [{"param": SOMAXCONN, "min": 128, "max": 4096}],
        "initial_candidates": [{"values": {SOMAXCONN: 4096}, "reason": "a queue for the whole burst"}]})


def measured(inventory, tmp_path, spec: TuningSpec) -> dict:
    fleet = Fleet.connect(inventory.select(None), ConnectOptions(knobs=(SOMAXCONN,)))
    try:
        run = RunDir.create(spec.workload_name, tmp_path / spec.service.restart)
        return tune(spec, fleet, run, RunOptions(strategy="random", budget=3, seed=1, verify_repeats=3,
                                                 confirm_top=0))
    finally:
        fleet.close()


def test_somaxconn_without_a_restart_is_refused_and_shows_nothing_with_the_restart_it_shows(inventory, tmp_path):
    never, auto = burst("never"), burst("auto")
    with pytest.raises(SpecError, match="restart: never, so a new value could not be measured"):
        validate(never, Catalog.default())
    validate(auto, Catalog.default())

    unseen = measured(inventory, tmp_path, never)
    assert unseen["best_config"] == {SOMAXCONN: "4096"} or unseen["verification"]["change_pct"] < 20
    assert not unseen["success"], unseen["verdict"]
    seen = measured(inventory, tmp_path, auto)
    assert seen["success"] and seen["improvement"] > 50, seen["verdict"]
