"""The expert profiles' loader: names, lookups, workloads, TuneD's floors, catalog coverage (with
each new tunable's scope checked in a real network namespace), and a user's own profile files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controller import profiles
from controller.catalog import NS_READONLY, Catalog
from controller.strategist import builtin
from node_agent import denylist

NEW_WORKLOADS = ("pg-select", "pg-connect", "nginx", "nginx-keepalive", "redis", "link", "fileio")


def test_names_and_what_each_profile_says():
    names = profiles.names()
    assert names == sorted(names) and len(names) == len(set(names))
    for wanted in ("tuned:throughput-performance", "tuned:network-throughput", "tuned:network-latency",
                   "tuned:latency-performance", "redis:docs", "postgresql:docs"):
        assert wanted in names
    for name in names:
        p = profiles.get(name)
        assert p.name == name and p.source and p.version and p.values
        assert all(v == " ".join(v.split()) and v for v in p.values.values()), name  # canonical text
        assert set(p.modifiers) <= set(p.values) and set(p.why) <= set(p.values) | set(p.not_sysctl)
        if name.startswith(("redis:", "postgresql:")):
            assert set(p.why) >= set(p.values), f"{name}: every value quotes its source"


def test_includes_are_resolved_and_the_rest_is_not_a_sysctl():
    nt = profiles.get("tuned:network-throughput")
    assert nt.includes == ("tuned:throughput-performance",)
    assert nt.values["net.ipv4.tcp_rmem"] == "4096 87380 16777216"  # quotes gone, one space
    assert nt.origin["vm.dirty_ratio"] == "tuned:throughput-performance"
    assert nt.origin["net.ipv4.tcp_wmem"] == "tuned:network-throughput"
    assert nt.not_sysctl["[cpu] governor"] == "performance" and nt.not_sysctl["[disk] readahead"] == ">4096"
    assert "tuned 2.20.0-1" in nt.source and "profiles/network-throughput/tuned.conf" in nt.source
    nl = profiles.get("tuned:network-latency")
    assert nl.values["vm.dirty_ratio"] == "10" and nl.values["net.ipv4.tcp_fastopen"] == "3"
    assert nl.not_sysctl["[vm] transparent_hugepages"] == "never"
    assert nl.not_sysctl["[bootloader] cmdline_network_latency"] == "skew_tick=1"
    pg = profiles.get("tuned:postgresql")
    assert pg.values["vm.dirty_bytes"] == "536870912" and pg.values["vm.swappiness"] == "3"
    assert pg.not_sysctl["[scheduler] sched_migration_cost_ns"] == "50000000"  # moved out of [sysctl] in 2.16
    assert any("5.13" in n for n in pg.notes)
    # the ThunderX-only unit is listed with its condition, never merged into values
    tp = profiles.get("tuned:throughput-performance")
    assert "kernel.numa_balancing" not in tp.values
    assert tp.conditional[0]["values"] == {"kernel.numa_balancing": "0"} and "aarch64" in tp.conditional[0]["when"]


def test_a_floor_is_written_only_where_the_current_value_is_lower():
    tp = profiles.get("tuned:throughput-performance")
    assert tp.written("net.core.somaxconn") == ">2048" and tp.values["net.core.somaxconn"] == "2048"
    assert "net.core.somaxconn" not in tp.to_apply({"net.core.somaxconn": "4096"})  # Linux >= 5.4: untouched
    assert tp.to_apply({"net.core.somaxconn": "128"})["net.core.somaxconn"] == "2048"
    assert tp.to_apply({})["vm.swappiness"] == "10"
    redis = profiles.get("redis:docs")
    assert redis.written("net.core.somaxconn") == ">511" and redis.values["vm.overcommit_memory"] == "1"
    assert redis.to_apply({"net.core.somaxconn": "4096", "net.ipv4.tcp_max_syn_backlog": "256"}) == {
        "vm.overcommit_memory": "1", "vm.max_map_count": "262144", "net.ipv4.tcp_max_syn_backlog": "511"}


def test_an_unknown_name_is_one_line_listing_the_known_ones():
    with pytest.raises(profiles.ProfileError) as e:
        profiles.get("tuned:throughput")
    assert "\n" not in str(e.value) and "tuned:throughput-performance" in str(e.value) and "redis:docs" in str(e.value)
    with pytest.raises(profiles.ProfileError, match="unknown workload 'mysql'; known: .*pg-oltp"):
        profiles.for_workload("mysql")


def test_every_workload_has_profiles_that_fit_it():
    keys = {w.key for w in builtin.workloads()} | set(NEW_WORKLOADS)
    assert keys <= set(profiles.workload_keys())
    for key in keys:
        found = [p.name for p in profiles.for_workload(key)]
        assert found and len(found) == len(set(found)), key
    assert [p.name for p in profiles.for_workload("redis")][0] == "redis:docs"
    assert [p.name for p in profiles.for_workload("pg-oltp")][:2] == ["postgresql:docs", "tuned:postgresql"]
    assert [p.name for p in profiles.for_workload("stream")][0] == "tuned:network-throughput"
    assert "tuned:network-throughput" in [p.name for p in profiles.for_workload("link")]
    for key in ("web", "nginx", "pg-oltp", "connection-storm"):
        names = {p.name for p in profiles.for_workload(key)}
        assert {"tuned:throughput-performance", "tuned:latency-performance"} <= names or \
               "tuned:network-latency" in names, key


def test_every_shipped_sysctl_is_in_the_catalog_and_none_is_denied():
    catalog = Catalog.default()
    problems = [line for n in profiles.names() for line in profiles.get(n).catalog_problems(catalog)]
    # the only values outside safe bounds: TuneD's postgresql writes the ratios as 0 before the bytes pair,
    # which the kernel zeroes anyway once a *_bytes value is written (tunefleet never asks for a 0 ratio)
    assert problems == ["tuned:postgresql: vm.dirty_ratio = 0 is outside the safe bounds 5..80",
                        "tuned:postgresql: vm.dirty_background_ratio = 0 is outside the safe bounds 1..50"]
    names = {s for n in profiles.names() for s in profiles.get(n).values}
    names |= {s for n in profiles.names() for c in profiles.get(n).conditional for s in c["values"]}
    assert [s for s in names if catalog.get(s) is None] == []
    assert [s for s in names if denylist.denied(s)] == []


ADDED = ("net.core.busy_read", "net.core.busy_poll", "net.ipv4.tcp_fastopen", "vm.dirty_bytes",
         "vm.dirty_background_bytes", "vm.overcommit_memory", "vm.max_map_count")


def _in_ns(ns: str, script: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_added_tunables_scope_holds_inside_a_network_namespace(netns):
    """netns knobs exist and are writable in a namespace, and a write there leaves the host's value alone;
    kernel knobs noted as absent are absent there. Only our own namespace's value is written."""
    catalog = Catalog.default()
    for name in ADDED:
        t = catalog.get(name)
        path = "/proc/sys/" + name.replace(".", "/")
        state = _in_ns(netns, f"if [ -f {path} ]; then [ -w {path} ] && echo writable || echo read-only; "
                              "else echo absent; fi")
        assert Path(path).is_file(), f"{name} is missing on this kernel"
        if t.note.startswith("absent"):
            assert state == "absent", name
        elif t.scope == "netns":
            assert state == "writable", name
            host = Path(path).read_text().strip()
            other = next(c for c in t.choices if c != host)
            assert _in_ns(netns, f"echo {other} > {path}; cat {path}") == other
            assert Path(path).read_text().strip() == host, f"{name}: a namespace's write reached the host"
        else:  # shared by every namespace; the note says when a namespace cannot see or write it
            assert t.scope == "kernel" and name.startswith(("vm.", "net.core.")), name
            assert state == ("read-only" if t.note == NS_READONLY else "writable"), name


# --- a user's own profile files -----------------------------------------------------------------

def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).mkdir(parents=True, exist_ok=True)
    path = folder / name / "tuned.conf"
    path.write_text(text)
    return path


def test_a_users_tuned_profile_builds_on_a_shipped_one(tmp_path):
    conf = _write(tmp_path, "my-db", "[main]\nsummary=ours\ninclude=throughput-performance\n\n"
                                      "[sysctl]\nvm.swappiness = 1  # quiet\nnet.core.somaxconn=\"8192\"\n"
                                      "[vm]\ndirty_bytes = 25%\n")
    [p] = profiles.load_file(conf.parent)
    assert p.name == "file:my-db" and p.summary == "ours" and p.includes == ("tuned:throughput-performance",)
    assert p.values["vm.swappiness"] == "1" and p.values["net.core.somaxconn"] == "8192"
    assert "net.core.somaxconn" not in p.modifiers  # the later unquoted value replaces ">2048"
    assert p.values["vm.dirty_ratio"] == "25"  # TuneD >= 2.25: [vm] dirty_bytes = N% writes the ratio
    assert p.origin["vm.swappiness"] == "file:my-db" and p.origin["vm.dirty_background_ratio"].startswith("tuned:")
    # a sibling folder shadows the shipped profile of that name, as /etc/tuned does for TuneD
    _write(tmp_path, "throughput-performance", "[sysctl]\nvm.vfs_cache_pressure=50\n")
    [p] = profiles.load_file(conf)
    assert p.values["vm.vfs_cache_pressure"] == "50" and "vm.dirty_background_ratio" not in p.values


@pytest.mark.parametrize("text, message", [
    ("[sysctl]\nkernel.pid_max=${f:cpu_count}\n", "uses a TuneD function"),
    ("[sysctl]\nvm.swappiness=${undefined}\n", "a variable tunefleet cannot resolve"),
    ("[main]\ninclude=${f:virt_check:virtual-guest:throughput-performance}\n", "TuneD evaluates this on the host"),
    ("[main]\ninclude=no-such-profile\n", "include=no-such-profile: no such TuneD profile (known: "),
    ("[sysctl]\nkernel.sysrq=1\n", "deny-list"),
    ("[sysctl]\nvm/../../etc=1\n", "not a plain sysctl name"),
    ("vm.swappiness=1\n", "not a TuneD profile file"),
])
def test_what_a_users_tuned_profile_cannot_use_is_one_line(tmp_path, text, message):
    conf = _write(tmp_path, "mine", text)
    with pytest.raises(profiles.ProfileError) as e:
        profiles.load_file(conf)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_variables_expand_and_an_optional_include_may_be_missing(tmp_path):
    conf = _write(tmp_path, "mine", "[main]\ninclude=-not-there,latency-performance\n[variables]\nn=3\n"
                                    "[sysctl]\nnet.ipv4.tcp_fastopen=${n}\n")
    [p] = profiles.load_file(conf)
    assert p.values["net.ipv4.tcp_fastopen"] == "3" and p.includes == ("tuned:latency-performance",)


def test_a_users_yaml_profile(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("profiles:\n  app:docs:\n    summary: our app\n    references:\n"
                    "      guide: {title: Ops guide, url: 'https://example.invalid/ops', version: '3'}\n"
                    "    sysctl:\n      vm.swappiness: 5\n"
                    "      net.core.somaxconn: {value: '>1024', from: guide, why: Bursts of clients.}\n")
    [p] = profiles.load_file(path)
    assert p.values == {"vm.swappiness": "5", "net.core.somaxconn": "1024"}
    assert p.modifiers == {"net.core.somaxconn": ">"}
    assert p.why == {"net.core.somaxconn": "Bursts of clients."} and "Ops guide" in p.source and p.version == "3"
    path.write_text("profiles:\n  x:\n    sysctl:\n      vm.swappiness: {value: 5, from: nowhere}\n")
    with pytest.raises(profiles.ProfileError, match="from: 'nowhere' is not one of references"):
        profiles.load_file(path)
