"""The built-in strategist: goals in plain words -> a workload, a valid spec, honest warnings."""

import pytest

from controller.catalog import Catalog
from controller.errors import SpecError
from controller.gate import validate
from controller.strategist import builtin
from controller.strategist.builtin import plan, workloads


@pytest.mark.parametrize("goal, key", [
    ("optimize this system for a PostgreSQL database", "pg-oltp"),
    ("tune my postgres OLTP box", "pg-oltp"),
    ("many short connections postgres", "pg-connect"),
    ("our app opens a new connection to PostgreSQL for every query, no pgbouncer", "pg-connect"),
    ("make new connections to my web servers faster", "connection-storm"),
    ("accept backlog overflows during connection bursts", "connection-storm"),
    ("nginx serving HTTP requests", "nginx"),
    ("keep-alive clients of my nginx", "nginx-keepalive"),
    ("a redis cache", "redis"),
    ("read-only postgres reporting queries", "pg-select"),
    ("cpu bound", "cpu"),
    ("CPU-bound number crunching", "cpu"),
    ("network throughput", "stream"),
    ("bulk transfer of backups between hosts", "link"),
    ("replicate to a remote site across a high-latency WAN", "link"),
    ("disk I/O heavy, lots of dirty page writeback", "fileio"),
    ("connection-storm", "connection-storm"),
])
def test_goal_picks_workload(goal, key):
    p = plan(goal)
    assert p.workload == key, p.reason
    assert p.strategist == "builtin"


def test_reason_names_the_words():
    p = plan("optimize this system for a PostgreSQL database")
    assert "postgres" in p.reason and "database" in p.reason


def test_no_match_lists_the_workloads():
    with pytest.raises(SpecError) as e:
        plan("make the coffee machine faster")
    msg = str(e.value)
    for w in workloads():
        assert w.key in msg
    assert "--spec" in msg


def test_every_workload_passes_the_catalog_and_its_own_shape():
    catalog = Catalog.default()
    assert len(workloads()) >= 7
    for w in workloads():
        spec = w.spec
        validate(spec, catalog)
        assert spec.action_dim >= 1
        assert set(w.rationale) == set(spec.knob_names)
        assert all(w.rationale.values()), w.key
        assert all(k.rationale for k in spec.action_space)
        assert w.keywords and w.description and w.name == spec.workload_name


def test_storm_as_specified():
    p = plan("connection storm")
    spec = p.spec
    assert spec.benchmark_command == "tunefleet-bench accept-storm --clients 256"
    assert spec.reward_metric == "elapsed_ms" and spec.goal == "minimize"
    somax, syn = spec.action_space
    assert (somax.param, somax.min, somax.max, somax.scale) == ("net.core.somaxconn", 64, 4096, "log")
    assert (syn.param, syn.min, syn.max, syn.scale) == ("net.ipv4.tcp_max_syn_backlog", 64, 4096, "log")
    assert p.warnings == []  # built-in benchmark: no tool, no service


def test_stream_tunes_tcp_buffers_as_vectors():
    spec = plan("network throughput").spec
    assert spec.knob_names == ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]
    assert all(k.components == 3 and k.dims == 2 for k in spec.action_space)
    assert spec.parse_reward("throughput_mb_s = 812.5\n") == 812.5


def test_the_postgresql_workloads_run_a_private_server_of_their_own():
    oltp = plan("postgres").spec
    assert oltp.benchmark_command == "pgbench -h 127.0.0.1 -p 15432 -U pgbench -j 2 -n -c 8 -T 10 pgbench"
    assert oltp.setup == ["tunefleet-service postgres setup --port 15432 --scale 5"]
    assert oltp.service.start == "tunefleet-service postgres start" and oltp.service.ready == "127.0.0.1:15432"
    assert oltp.reset == "tunefleet-service postgres reset" and " -T 2 " in oltp.warmup
    assert oltp.teardown == ["tunefleet-service postgres teardown"]
    assert "your own server is never touched" in oltp.description
    connect = plan("short connections to postgres").spec
    assert " -C " in connect.benchmark_command and connect.service.name == "postgres"


def test_honest_caveat_on_dirty_knobs():
    p = plan("PostgreSQL")
    assert any("no effect" in w for w in p.warnings)


def test_specs_are_fresh_copies():
    a = plan("cpu bound").spec
    a.action_space[0].values.append("7")
    assert plan("cpu bound").spec.action_space[0].values == ["0", "1"]


def _facts(**hosts):
    return {name: {"tools": {"pgbench": tool, "sysbench": None, "ab": None}, "services": {"postgresql": pg}}
            for name, (tool, pg) in hosts.items()}


def test_warnings_for_missing_tools():
    facts = _facts(db1=("/usr/bin/pgbench", True), db2=(None, True), db3=("/usr/bin/pgbench", False))
    p = plan("PostgreSQL database", facts)
    assert any("pgbench" in w and "db2" in w and "db1" not in w for w in p.warnings)
    assert not any("db3" in w for w in p.warnings)  # the run brings its own server: none need be running
    clean = plan("PostgreSQL database", _facts(db1=("/usr/bin/pgbench", True)))
    assert not any("db1" in w for w in clean.warnings)
    storm = plan("connection storm", facts)
    assert storm.warnings == []


def test_matching_is_by_words_not_substrings():
    # "io" inside "ratio" or "ab" inside "table" must not count
    assert builtin.score("improve the ratio", next(w for w in workloads() if w.key == "fileio"))[0] == 0
    assert builtin.score("a stable table", next(w for w in workloads() if w.key == "nginx"))[0] == 0


# --- planning within the facts: hosts that share one kernel ---------------------------------------

def _shared(*names, boot_id="same-boot"):
    facts = _facts(**{n: ("/usr/bin/pgbench", True) for n in names})
    for f in facts.values():
        f["boot_id"] = boot_id
    return facts


def test_kernel_wide_knobs_are_left_out_on_a_shared_kernel_and_named():
    facts = _shared("h1", "h2", "h3")
    p = plan("optimize this system for a PostgreSQL database", facts)
    kernel_wide = ["vm.dirty_ratio", "vm.dirty_background_ratio", "vm.swappiness", "kernel.sched_autogroup_enabled",
                   "kernel.sched_migration_cost_ns"]
    assert p.spec.knob_names == ["net.core.somaxconn"]
    assert list(p.left_out) == kernel_wide
    assert all("h1, h2, h3 share one kernel" in p.rationale[n] for n in kernel_wide)
    assert len(p.notes) == 1 and all(n in p.notes[0] for n in kernel_wide) and "--limit h1" in p.notes[0]
    assert "pg-connect also matches the goal" in p.notes[0]
    assert not any("vm.dirty_*" in w for w in p.warnings), "no caveat about knobs the plan no longer has"
    # what the validation would have refused is gone from the spec
    assert not any("share one kernel" in p for p in Catalog.default().check_hosts(p.spec, facts))
    assert any("share one kernel" in p for p in Catalog.default().check_hosts(builtin.WORKLOADS[0].spec, facts))


def test_separate_kernels_keep_every_knob():
    facts = {**_shared("db1", boot_id="a"), **_shared("db2", boot_id="b")}
    p = plan("optimize this system for a PostgreSQL database", facts)
    assert "vm.swappiness" in p.spec.knob_names and p.notes == [] and p.left_out == {}


def test_a_users_catalog_that_makes_a_knob_kernel_wide_is_honoured(tmp_path):
    extra = tmp_path / "c.yml"
    extra.write_text("tunables:\n  net.ipv4.tcp_fin_timeout: {scope: kernel}\n")
    p = plan("many short connections postgres", _shared("h1", "h2"), Catalog.load_extra(extra))
    assert "net.ipv4.tcp_fin_timeout" in p.left_out and "net.core.somaxconn" in p.spec.knob_names


def test_nothing_left_to_tune_says_so_and_proposes_one_host():
    with pytest.raises(SpecError) as e:
        plan("cpu bound", _shared("h1", "h2"))
    msg = str(e.value)
    assert "\n" not in msg
    assert "kernel.sched_autogroup_enabled, vm.swappiness" in msg and "h1, h2 share one kernel" in msg
    assert "--limit h1" in msg and "connection-storm" in msg and "pg-oltp" not in msg
    assert plan("cpu bound", _shared("h1")).spec.knob_names  # one host alone: nothing shared


@pytest.mark.parametrize("goal, key, bound", [
    ("more requests per second from nginx keep-alive clients, but keep p99 latency under 20 ms", "nginx-keepalive",
     ("latency_p99_ms", 20.0)),
    ("a redis cache with p99 below 2 ms", "redis", ("latency_p99_ms", 2.0)),
    ("postgres oltp, keeping the average latency under 5 ms", "pg-oltp", ("latency_avg_ms", 5.0)),
    ("nginx keep-alive, p99 under 0.5 s", "nginx-keepalive", ("latency_p99_ms", 500.0)),
])
def test_a_goal_with_two_sides_becomes_an_objective_and_a_bound(goal, key, bound):
    p = plan(goal)
    assert p.workload == key
    assert [(c.metric, c.max) for c in p.spec.constraints] == [bound]
    assert any(n.startswith("bound from the goal") for n in p.notes)


def test_a_bound_the_benchmark_cannot_check_is_said_not_set():
    p = plan("postgres oltp with p99 under 30 ms")  # pgbench prints the average latency, not a p99
    assert p.spec.constraints == [] and any("does not report" in n for n in p.notes)
