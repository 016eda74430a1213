"""A knob that takes effect only when a server listens again, measured with and without the restart.

net.core.somaxconn caps a listener's accept queue at listen(). tests/fixtures/userbench has a
server a user might run (busy_server.py: it listens once at its start, then serves a connection
every 2 ms) and a burst of 300 clients against it (burst.py). The fleet starts at 128: the burst
overflows the queue and its last clients wait for a 1 s SYN retransmit (about 1.4 s in all);
with a queue for the whole burst it is served in about 0.65 s. A run that raises somaxconn but
never restarts the server measures the queue the server made at its start: it must not report a
gain it could not have measured (the command line refuses such a spec; the library is driven
here to show why). With the restart before every measured run the gain appears.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.catalog import Catalog
from controller.errors import SpecError
from controller.fleet.fleet import ConnectOptions, Fleet
from controller.gate import validate
from controller.runs import RunDir
from controller.spec import TuningSpec
from controller.tuner import RunOptions, tune

pytestmark = pytest.mark.fleet

SOMAXCONN = "net.core.somaxconn"
USERBENCH = Path(__file__).resolve().parents[1] / "fixtures" / "userbench"


def burst(folder: Path, restart: str) -> TuningSpec:
    server = ["/usr/bin/python3", str(folder / "busy_server.py")]
    pidfile = str(folder / "server.pid")  # h1 alone runs it
    return TuningSpec.from_dict({
        "workload_name": f"burst against a running server, restart {restart}", "reward_metric": "burst_ms",
        "reward_pattern": r"burst served in ([0-9.]+) ms", "reward_goal": "minimize", "benchmark_timeout": 60,
        "baseline_repeats": 2, "benchmark_command": ["/usr/bin/python3", str(folder / "burst.py")],
        "service": {"name": "busy server", "start": server + ["start", "--pidfile", pidfile],
                    "stop": server + ["stop", "--pidfile", pidfile], "restart": restart},
        "action_space": [{"param": SOMAXCONN, "min": 128, "max": 4096}],
        "initial_candidates": [{"values": {SOMAXCONN: 4096}, "reason": "a queue for the whole burst"}]})


def measured(inventory, tmp_path, spec: TuningSpec) -> dict:
    fleet = Fleet.connect(inventory.select("h1"), ConnectOptions(knobs=(SOMAXCONN,)))
    try:
        run = RunDir.create(spec.workload_name, tmp_path / spec.service.restart)
        return tune(spec, fleet, run, RunOptions(strategy="random", budget=2, seed=1, verify_repeats=4,
                                                 confirm_top=0))
    finally:
        fleet.close()


@pytest.fixture()
def folder(tmp_path) -> Path:
    for name in ("busy_server.py", "burst.py"):
        shutil.copy(USERBENCH / name, tmp_path / name)
    return tmp_path


def test_somaxconn_without_a_restart_is_refused_and_shows_nothing_with_the_restart_it_shows(inventory, folder):
    never, auto = burst(folder, "never"), burst(folder, "auto")
    with pytest.raises(SpecError, match="restart: never, so a new value could not be measured"):
        validate(never, Catalog.default(), origin="user")
    validate(auto, Catalog.default(), origin="user")

    unseen = measured(inventory, folder, never)
    # Every value measures the queue of 128 the server made at its start: which one the search calls best is
    # the noise's choice, and verification shows it changes nothing.
    assert not unseen["success"] and abs(unseen["verification"]["change_pct"]) < 10, unseen["verdict"]
    seen = measured(inventory, folder, auto)
    assert seen["success"] and seen["improvement"] > 40, seen["verdict"]
