"""The catalog of tunables: refusals without hosts, refusals on hosts, user catalog files."""

import json

import pytest

from controller.catalog import Catalog
from controller.errors import SpecError
from controller.fleet.facts import shared_kernels
from controller.gate import validate
from controller.spec import TuningSpec

BOOT = "9434e2c1-5d7a-4c8e-9f00-1b2c3d4e5f60"


def spec_with(*knobs, command="pgbench -c 8 -j 2 -T 10 pgbench"):
    return TuningSpec.from_dict({"workload_name": "w", "reward_metric": "tps", "benchmark_command": command,
                                 "action_space": list(knobs)})


def host(boot_id=BOOT, mem_kb=2_000_000, **knobs):
    """Hello facts; knobs given as name=(exists, writable)."""
    return {"boot_id": boot_id, "mem_total_kb": mem_kb,
            "knobs": {k.replace("__", "."): {"exists": e, "value": "1" if e else None, "writable": w}
                      for k, (e, w) in knobs.items()}}


SOMAXCONN = {"param": "net.core.somaxconn", "min": 16, "max": 4096}
SWAPPINESS = {"param": "vm.swappiness", "min": 0, "max": 60}


@pytest.fixture
def catalog():
    return Catalog.default()


def test_default_covers_the_knobs_the_workloads_need(catalog):
    for name in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout",
                 "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_congestion_control",
                 "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.ip_local_port_range",
                 "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_syn_retries", "net.core.rmem_max",
                 "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default", "net.core.netdev_max_backlog",
                 "vm.swappiness", "vm.dirty_ratio", "vm.dirty_background_ratio", "vm.dirty_expire_centisecs",
                 "vm.dirty_writeback_centisecs", "vm.vfs_cache_pressure", "vm.min_free_kbytes",
                 "kernel.sched_autogroup_enabled", "kernel.numa_balancing", "fs.file-max"):
        t = catalog.get(name)
        assert t is not None, name
        assert t.description
    assert catalog.get("net.core.somaxconn").scope == "netns"
    assert catalog.get("net.ipv4.tcp_rmem").scope == "netns" and catalog.get("net.ipv4.tcp_rmem").components == 3
    for name in ("vm.swappiness", "kernel.numa_balancing", "fs.file-max", "net.core.rmem_max",
                 "net.core.netdev_max_backlog"):
        assert catalog.get(name).scope == "kernel"
    assert catalog.get("vm.swappiness").min == (0,) and catalog.get("vm.swappiness").max == (100,)
    assert catalog.get("vm.dirty_bytes").min == (16777216,)  # never 0: writing 0 gives EINVAL
    assert catalog.get("no.such.knob") is None


def test_a_sane_spec_has_no_problems(catalog):
    spec = spec_with(SOMAXCONN, {"param": "net.ipv4.tcp_rmem", "min": "4096 4096 4096",
                                 "max": "4096 131072 6291456"},
                     {"param": "net.ipv4.tcp_congestion_control", "values": ["cubic", "reno"]},
                     {"param": "net.ipv4.tcp_tw_reuse", "min": 0, "max": 2}, SWAPPINESS,
                     command="tunefleet-bench accept-storm --clients 64")
    assert catalog.check_spec(spec) == []
    validate(spec, catalog)  # does not raise


@pytest.mark.parametrize("name", ["net.core.somaxconn; rm -rf /", "../../etc/passwd", "/proc/sys/vm/swappiness",
                                  "vm.swappiness\n", "vm..swappiness", "$(reboot).x"])
def test_not_a_plain_sysctl_name(catalog, name):
    problems = catalog.check_spec(spec_with({"param": name, "min": 1, "max": 2}))
    assert len(problems) == 1
    assert "not a plain sysctl name" in problems[0]


def test_unknown_knob_points_at_catalog_option(catalog):
    [problem] = catalog.check_spec(spec_with({"param": "net.ipv4.tcp_made_up", "min": 1, "max": 2}))
    assert "net.ipv4.tcp_made_up" in problem and "--catalog FILE" in problem


def test_range_outside_safe_bounds_names_the_bounds(catalog):
    [problem] = catalog.check_spec(spec_with({"param": "vm.swappiness", "min": 0, "max": 150}))
    assert "vm.swappiness" in problem and "0..100" in problem
    [problem] = catalog.check_spec(spec_with({"param": "net.core.somaxconn", "min": 1, "max": 4096}))
    assert "16..65535" in problem
    [problem] = catalog.check_spec(spec_with({"param": "net.ipv4.tcp_rmem", "min": "1024 4096 4096",
                                              "max": "4096 131072 6291456"}))
    assert "net.ipv4.tcp_rmem" in problem and "4096 4096 4096" in problem


def test_vector_shape(catalog):
    [problem] = catalog.check_spec(spec_with({"param": "net.ipv4.tcp_rmem", "min": "4096 4096", "max": "4096 8192"}))
    assert "3 component" in problem


def test_choices_not_allowed(catalog):
    [problem] = catalog.check_spec(spec_with({"param": "net.ipv4.tcp_congestion_control",
                                              "values": ["cubic", "vegas"]}))
    assert "'vegas'" in problem and "cubic" in problem
    [problem] = catalog.check_spec(spec_with({"param": "net.ipv4.tcp_tw_reuse", "min": 0, "max": 5}))
    assert "tcp_tw_reuse" in problem
    [problem] = catalog.check_spec(spec_with({"param": "vm.swappiness", "values": [10, 500]}))
    assert "'500'" in problem and "0..100" in problem


def test_duplicate_knob(catalog):
    problems = catalog.check_spec(spec_with(SWAPPINESS, SOMAXCONN, SWAPPINESS))
    assert problems == ["vm.swappiness: listed twice in action_space"]


def test_kernel_knob_on_hosts_sharing_a_kernel(catalog):
    spec = spec_with(SOMAXCONN, SWAPPINESS)
    facts = {h: host(net__core__somaxconn=(True, True), vm__swappiness=(True, True)) for h in ("h1", "h2", "h3")}
    problems = catalog.check_hosts(spec, facts)
    assert problems == ["h1, h2, h3 share one kernel (boot_id 9434e2c1…): kernel-wide knob vm.swappiness cannot be "
                        "tuned on them in parallel; use --limit to pick one of them"]
    # per-namespace knobs alone are fine on one kernel
    assert catalog.check_hosts(spec_with(SOMAXCONN), facts) == []
    # one host per kernel is fine too
    facts = {h: host(boot_id=f"boot-{h}", vm__swappiness=(True, True)) for h in ("h1", "h2")}
    assert catalog.check_hosts(spec_with(SWAPPINESS), facts) == []


def test_only_hosts_that_share_a_kernel_are_named(catalog):
    facts = {"a": host(boot_id="aaaa1111", vm__swappiness=(True, True)),
             "b": host(boot_id="bbbb2222", vm__swappiness=(True, True)),
             "c": host(boot_id="bbbb2222", vm__swappiness=(True, True))}
    [problem] = catalog.check_hosts(spec_with(SWAPPINESS), facts)
    assert problem.startswith("b, c share one kernel (boot_id bbbb2222…)")


def test_shared_kernels_name_hosts_in_one_order_whatever_order_the_facts_came_in():
    """One function decides which hosts share a kernel (the catalog, the planners, the fleet's tables):
    hosts by name, so a refusal or a plan names them alike from run to run; no facts, no sharing."""
    facts = {"web2": {"boot_id": "b"}, "db1": {"boot_id": "a"}, "web1": {"boot_id": "b"}, "db2": {"boot_id": "a"},
             "lone": {"boot_id": "c"}, "lost": None, "old": {}}
    assert shared_kernels(facts) == {"a": ["db1", "db2"], "b": ["web1", "web2"]}
    assert list(shared_kernels(dict(reversed(facts.items())))) == ["a", "b"]


def test_missing_or_read_only_knob_on_a_host(catalog):
    spec = spec_with(SOMAXCONN, {"param": "net.core.rmem_max", "min": 212992, "max": 4194304})
    facts = {"h1": host(boot_id="1", net__core__somaxconn=(True, True), net__core__rmem_max=(True, True)),
             "h2": host(boot_id="2", net__core__somaxconn=(False, False), net__core__rmem_max=(True, False))}
    problems = catalog.check_hosts(spec, facts)
    assert len(problems) == 2
    assert "net.core.somaxconn" in problems[0] and "missing on h2" in problems[0] and "h1" not in problems[0]
    assert "net.core.rmem_max" in problems[1] and "not writable on h2" in problems[1]


def test_host_that_did_not_report_a_knob(catalog):
    [problem] = catalog.check_hosts(spec_with(SOMAXCONN), {"h1": {"boot_id": "1", "knobs": {}}})
    assert "net.core.somaxconn" in problem and "h1" in problem


def test_congestion_control_not_available_on_host(catalog):
    spec = spec_with({"param": "net.ipv4.tcp_congestion_control", "values": ["cubic", "bbr"]})
    facts = {"h1": host(boot_id="1", net__ipv4__tcp_congestion_control=(True, True))}
    facts["h1"]["knobs"]["net.ipv4.tcp_available_congestion_control"] = {
        "exists": True, "value": "reno cubic", "writable": False}
    [problem] = catalog.check_hosts(spec, facts)
    assert "bbr" in problem and "h1" in problem


def test_min_free_kbytes_against_host_memory(catalog):
    spec = spec_with({"param": "vm.min_free_kbytes", "min": 16384, "max": 262144})
    ok = {"big": host(boot_id="1", mem_kb=16_000_000, vm__min_free_kbytes=(True, True))}
    assert catalog.check_hosts(spec, ok) == []
    small = {"small": host(boot_id="2", mem_kb=1_000_000, vm__min_free_kbytes=(True, True))}
    [problem] = catalog.check_hosts(spec, small)
    assert "small" in problem and "262144" in problem


def test_validate_lists_every_problem_one_per_line(catalog):
    spec = spec_with({"param": "net.core.somaxconn; rm -rf /", "min": 16, "max": 64},
                     {"param": "vm.swappiness", "min": 0, "max": 150})
    with pytest.raises(SpecError) as e:
        validate(spec, catalog)
    lines = str(e.value).splitlines()
    assert "2 problems" in lines[0]
    assert len(lines) == 3
    assert "rm -rf" in lines[1] and "0..100" in lines[2]


def test_validate_with_facts(catalog):
    spec = spec_with(SOMAXCONN, SWAPPINESS, command="tunefleet-bench accept-storm --clients 64")
    facts = {h: host(net__core__somaxconn=(True, True), vm__swappiness=(True, True)) for h in ("h1", "h2")}
    with pytest.raises(SpecError, match="share one kernel"):
        validate(spec, catalog, facts)
    validate(spec, catalog, {"h1": facts["h1"]})


def test_validate_refuses_a_shell_in_the_benchmark(catalog):
    spec = spec_with(SOMAXCONN, command="pgbench -T 5 pgbench; reboot")
    with pytest.raises(SpecError, match="benchmark_command"):
        validate(spec, catalog)


def test_advice_on_overlapping_dirty_ratios(catalog):
    spec = spec_with({"param": "vm.dirty_ratio", "min": 5, "max": 40},
                     {"param": "vm.dirty_background_ratio", "min": 1, "max": 30})
    assert catalog.advice(spec) and catalog.check_spec(spec) == []
    spec = spec_with({"param": "vm.dirty_ratio", "min": 20, "max": 40},
                     {"param": "vm.dirty_background_ratio", "min": 1, "max": 10})
    assert catalog.advice(spec) == []


# --- user catalog files ---------------------------------------------------------------------------


def test_extra_catalog_adds_and_narrows(tmp_path, catalog):
    path = tmp_path / "extra.yml"
    path.write_text("""
tunables:
  net.ipv4.tcp_notsent_lowat:
    type: int
    min: 16384
    max: 4294967295
    scope: netns
    description: unsent bytes a socket may queue
  vm.swappiness:
    max: 30
""")
    extended = catalog.load_extra(path)
    assert extended.get("net.ipv4.tcp_notsent_lowat").scope == "netns"
    assert extended.get("vm.swappiness").max == (30,) and extended.get("vm.swappiness").min == (0,)
    assert catalog.get("vm.swappiness").max == (100,)  # the default is untouched
    assert extended.check_spec(spec_with({"param": "net.ipv4.tcp_notsent_lowat", "min": 16384, "max": 131072})) == []
    [problem] = extended.check_spec(spec_with(SWAPPINESS))
    assert "0..30" in problem
    # also usable from the class: extends the default catalog
    assert Catalog.load_extra(path).get("net.ipv4.tcp_notsent_lowat") is not None


def test_extra_catalog_json_list_form(tmp_path, catalog):
    path = tmp_path / "extra.json"
    path.write_text(json.dumps([{"name": "net.ipv4.tcp_ecn", "type": "choice", "choices": [0, 1, 2],
                                 "scope": "netns"}]))
    extended = catalog.load_extra(path)
    assert extended.get("net.ipv4.tcp_ecn").choices == ("0", "1", "2")
    new_default_scope = Catalog.load_extra(_write(tmp_path, "k.yml", "tunables:\n  kernel.foo_bar: "
                                                                       "{type: int, min: 1, max: 2}\n"))
    assert new_default_scope.get("kernel.foo_bar").scope == "kernel"  # the cautious default


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, where", [
    ("tunables:\n  vm.swappiness: {max: 150}\n", "tunables.vm.swappiness.max"),
    ("tunables:\n  vm.swappiness: {scope: netns}\n", "tunables.vm.swappiness.scope"),
    ("tunables:\n  net.ipv4.tcp_congestion_control: {choices: [cubic, vegas]}\n",
     "tunables.net.ipv4.tcp_congestion_control.choices"),
    ("tunables:\n  a.b: {type: float, min: 1, max: 2}\n", "tunables.a.b.type"),
    ("tunables:\n  a.b: {type: int, min: 3, max: 2}\n", "tunables.a.b.max"),
    ("tunables:\n  a.b: {type: int, min: 1}\n", "tunables.a.b.max"),
    ("tunables:\n  a.b: {type: int, min: 1, max: 2, mx: 3}\n", "tunables.a.b.mx"),
    ("tunables:\n  ../etc/passwd: {type: int, min: 1, max: 2}\n", "tunables.../etc/passwd"),
    ("tunables: [unclosed\n", "not valid YAML"),
    ("tunables: []\n", "tunables"),
])
def test_extra_catalog_errors_are_one_clear_line(tmp_path, catalog, text, where):
    path = _write(tmp_path, "extra.yml", text)
    with pytest.raises(SpecError) as e:
        catalog.load_extra(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and where in msg, msg


def test_each_knob_says_when_a_new_value_takes_effect(catalog):
    assert catalog.get("net.core.somaxconn").applies == "listen"
    assert catalog.get("net.ipv4.tcp_rmem").applies == "new_sockets"
    assert catalog.get("vm.dirty_ratio").applies == "now"
    assert all(t.applies in ("now", "new_sockets", "listen", "process_start", "reboot") for t in catalog)


@pytest.mark.parametrize("command, service, refused", [
    ("pgbench -c 8 -T 10 pgbench", None, "pgbench measures a server this spec never restarts"),
    ("wrk -d 5 http://127.0.0.1:18080/", {"name": "nginx", "start": "a", "stop": "b", "restart": "never"},
     "service nginx has restart: never"),
    ("wrk -d 5 http://127.0.0.1:18080/", {"name": "nginx", "start": "a", "stop": "b"}, None),
    ("tunefleet-bench accept-storm --clients 64", None, None),  # it listens anew every round
    ("sysbench fileio --file-test-mode=rndwr run", None, None),
])
def test_a_knob_the_benchmark_cannot_see_is_refused_with_the_way_out(catalog, command, service, refused):
    data = {"workload_name": "w", "reward_metric": "tps", "benchmark_command": command, "action_space": [SOMAXCONN]}
    spec = TuningSpec.from_dict({**data, **({"service": service} if service else {})})
    if refused is None:
        validate(spec, catalog, origin="user")
        return
    with pytest.raises(SpecError) as e:
        validate(spec, catalog, origin="user")
    assert refused in str(e.value) and "when a server calls listen()" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_user_catalog_may_say_when_its_knob_applies(tmp_path):
    extra = tmp_path / "extra.yml"
    extra.write_text("tunables:\n  net.ipv4.tcp_keepalive_time: {applies: new_sockets}\n")
    assert Catalog.load_extra(extra).get("net.ipv4.tcp_keepalive_time").applies == "new_sockets"
    extra.write_text("tunables:\n  net.ipv4.tcp_keepalive_time: {applies: sometimes}\n")
    with pytest.raises(SpecError, match="applies: must be one of now, new_sockets"):
        Catalog.load_extra(extra)


def test_which_kernels_have_the_cfs_tunables(catalog):
    kernels = catalog.get("kernel.sched_min_granularity_ns").kernels
    assert kernels.has("4.19.90-2003.4.0.0036.oe1.x86_64") and kernels.has("5.10.0-60.18.0.50.oe2203.x86_64")
    assert not kernels.has("6.6.0-28.0.0.34.oe2403.x86_64") and kernels.has("weird") is None
    assert "moved to /sys/kernel/debug/sched/" in kernels.why_missing("6.6.0-28.0.0.34.oe2403.x86_64")
