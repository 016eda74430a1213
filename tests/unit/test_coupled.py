"""Coupled knobs: the invariants (node_agent/invariants.py), the controller's repair of candidates
(controller/coupled.py) and the agent's refusal of a set that breaks them."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import coupled
from controller.catalog import Catalog
from controller.errors import SpecError
from controller.gate import validate
from controller.knob import Knob
from controller.spec import TuningSpec
from node_agent import invariants
from tests.unit.test_agent_process import Agent, Netns, payload, state  # noqa: F401 (fixtures)

RMEM, WMEM, PORTS = "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.ip_local_port_range"
BG, DIRTY = "vm.dirty_background_ratio", "vm.dirty_ratio"


def problems(values, current=None):
    return [message for _, message in invariants.violations(values, current)]


# -- the invariants --------------------------------------------------------------------------

@pytest.mark.parametrize("values, broken", [
    ({RMEM: "4096 131072 6291456"}, False),
    ({RMEM: "4096 100 50"}, True),                       # the kernel takes this as written
    ({WMEM: "8192 4096 65536"}, True),
    ({"net.ipv4.tcp_mem": "100 50 200"}, True),
    ({PORTS: "2000 2001"}, False),
    ({PORTS: "2000 2000"}, True),                        # accepted by the kernel: one ephemeral port
    ({BG: "10", DIRTY: "20"}, False),
    ({BG: "20", DIRTY: "20"}, True),                     # the kernel would halve dirty_ratio instead
    ({"vm.dirty_background_bytes": "0", "vm.dirty_bytes": "100"}, False),  # bytes not in force
    ({"vm.dirty_background_bytes": "200", "vm.dirty_bytes": "100"}, True),
    ({RMEM: "4096 131072 6291456", "net.core.rmem_max": "4194304"}, True),
    ({RMEM: "4096 131072 4194304", "net.core.rmem_max": "4194304"}, False),
    ({WMEM: "4096 16384 8388608", "net.core.wmem_max": "212992"}, True),
    ({"net.core.rmem_default": "300000", "net.core.rmem_max": "212992"}, True),
    ({"net.core.wmem_default": "200000", "net.core.wmem_max": "212992"}, False),
    ({RMEM: "4096 131072 6291456"}, False),              # a cap is only kept when both are tuned
])
def test_each_invariant(values, broken):
    assert bool(problems(values)) == broken, problems(values)


def test_an_always_pair_is_checked_against_the_hosts_partner():
    host = {DIRTY: "20", BG: "10"}
    assert problems({BG: "25"}, host.get) == ["vm.dirty_background_ratio < vm.dirty_ratio must hold, got 25 and 20"]
    assert problems({DIRTY: "8"}, host.get) and not problems({DIRTY: "30"}, host.get)
    assert not problems({BG: "25"}, {DIRTY: "0"}.get)  # dirty_bytes in force: the ratio is idle
    assert not problems({RMEM: "4096 131072 6291456"}, {"net.core.rmem_max": "212992"}.get)


# -- repair ------------------------------------------------------------------------------------

def knobs(*specs):
    return [Knob(**s) for s in specs]


@pytest.mark.parametrize("space, values, repaired", [
    # the cap is raised as far as needed
    ([{"param": BG, "min": 1, "max": 50}, {"param": DIRTY, "min": 5, "max": 80}],
     {BG: "30", DIRTY: "10"}, {BG: "30", DIRTY: "31"}),
    # the cap's range ends too low: the lesser side comes down below it
    ([{"param": BG, "min": 1, "max": 50}, {"param": DIRTY, "min": 5, "max": 20}],
     {BG: "30", DIRTY: "10"}, {BG: "19", DIRTY: "20"}),
    ([{"param": RMEM, "min": [4096, 4096, 4096], "max": [65536, 33554432, 268435456]},
      {"param": "net.core.rmem_max", "min": 212992, "max": 268435456}],
     {RMEM: "4096 131072 6291456", "net.core.rmem_max": "212992"},
     {RMEM: "4096 131072 6291456", "net.core.rmem_max": "6291456"}),
    # the per-socket max is clamped to the cap, and the default follows it down
    ([{"param": RMEM, "min": [4096, 4096, 4096], "max": [65536, 33554432, 268435456]},
      {"param": "net.core.rmem_max", "min": 212992, "max": 1048576}],
     {RMEM: "4096 4194304 6291456", "net.core.rmem_max": "212992"},
     {RMEM: "4096 1048576 1048576", "net.core.rmem_max": "1048576"}),
    ([{"param": PORTS, "min": [1024, 10000], "max": [60999, 65535]}],
     {PORTS: "30000 30000"}, {PORTS: "30000 30001"}),
    ([{"param": PORTS, "min": [1024, 10000], "max": [65535, 65535]}],
     {PORTS: "65535 65535"}, {PORTS: "65534 65535"}),
    # choice knobs move to a choice
    ([{"param": BG, "values": ["5", "30"]}, {"param": DIRTY, "values": ["10", "20", "40"]}],
     {BG: "30", DIRTY: "10"}, {BG: "30", DIRTY: "40"}),
    # consistent candidates are left alone
    ([{"param": BG, "min": 1, "max": 50}, {"param": DIRTY, "min": 5, "max": 80}],
     {BG: "5", DIRTY: "40"}, {BG: "5", DIRTY: "40"}),
])
def test_repair(space, values, repaired):
    assert coupled.repair(values, knobs(*space)) == repaired
    assert not problems(repaired)


def spec_with(*space):
    return TuningSpec.from_dict({"workload_name": "w", "reward_metric": "tps", "benchmark_command": "pgbench -T 5",
                                 "action_space": list(space)})


def test_ranges_that_cannot_hold_are_refused_with_the_spec():
    spec = spec_with({"param": BG, "min": 30, "max": 50}, {"param": DIRTY, "min": 5, "max": 30})
    with pytest.raises(SpecError, match="vm.dirty_background_ratio < vm.dirty_ratio cannot hold"):
        validate(spec, Catalog.default())
    validate(spec_with({"param": BG, "min": 29, "max": 50}, {"param": DIRTY, "min": 5, "max": 30}),
             Catalog.default())


# -- every candidate the action box maps to is consistent --------------------------------------

def _range(lo, hi):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(sorted)


@st.composite
def coupled_specs(draw):
    """Specs that tune coupled knobs together, with random ranges inside the catalog's bounds."""
    space = []
    catalog = Catalog.default()
    for name in draw(st.lists(st.sampled_from(
            [RMEM, WMEM, PORTS, BG, DIRTY, "net.core.rmem_max", "net.core.wmem_max",
             "net.core.rmem_default", "net.core.wmem_default"]), min_size=1, max_size=9, unique=True)):
        t = catalog.get(name)
        if draw(st.booleans()) and t.components == 1:
            chosen = draw(st.lists(st.integers(t.min[0], t.max[0]), min_size=1, max_size=4, unique=True))
            space.append({"param": name, "values": [str(v) for v in chosen]})
            continue
        lows, highs = [], []
        for lo, hi in zip(t.min, t.max):
            a, b = draw(_range(lo, hi))
            lows.append(max([a] + lows[-1:]))
            highs.append(max([b, lows[-1]] + highs[-1:]))
        space.append({"param": name, "min": lows, "max": highs})
    spec = spec_with(*space) if any(k.get("values") is None and k["min"] != k["max"] for k in space) else None
    if spec is None or Catalog.default().check_spec(spec):
        return None  # nothing to tune, or ranges no candidate can satisfy (refused, tested above)
    return spec


@settings(max_examples=300, deadline=None)
@given(coupled_specs(), st.data())
def test_every_candidate_to_values_produces_satisfies_the_invariants(spec, data):
    if spec is None:
        return
    unit = st.floats(-1.0, 1.0) | st.sampled_from([-1.0, 1.0, 0.0, float("nan"), 5.0, -7.0])
    action = np.array(data.draw(st.lists(unit, min_size=spec.action_dim, max_size=spec.action_dim)))
    values = spec.to_values(action)
    assert problems(values) == [], (spec.action_space, values)
    for knob in spec.action_space:
        assert knob.contains(values[knob.param]), (knob, values)
    assert spec.to_values(action) == values  # deterministic


# -- the agent refuses what the kernel would take ----------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_the_agent_refuses_an_inconsistent_set_the_kernel_would_accept(state, payload):  # noqa: F811
    netns = Netns()
    agent = Agent(netns, state, payload)
    try:
        before = {RMEM: netns.sysctl(RMEM), PORTS: netns.sysctl(PORTS)}
        result = agent.call("apply", {"values": {RMEM: "4096 100 50", PORTS: "20000 20000",
                                                 "net.ipv4.tcp_fin_timeout": 22}})
        assert result["applied"] == {"net.ipv4.tcp_fin_timeout": "22"}
        assert set(result["refused"]) == {RMEM, PORTS}
        assert all(r["type"] == "ValidationError" for r in result["refused"].values())
        assert {RMEM: netns.sysctl(RMEM), PORTS: netns.sysctl(PORTS)} == before
        assert agent.call("hello")["journaled"] == ["net.ipv4.tcp_fin_timeout"]  # refused knobs not journaled
        agent.call("bye")
    finally:
        agent.stop()
        netns.close()
