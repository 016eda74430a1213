"""The deny-list: knobs that execute programs or weaken the kernel are refused on both ends,
whatever a catalog file, a spec or a request says."""

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.catalog import DEFAULTS, Catalog, Tunable
from controller.errors import SpecError
from controller.gate import validate
from controller.spec import TuningSpec
from node_agent import denylist, journal
from tests.unit.test_agent_process import Agent, Netns, payload, state  # noqa: F401 (fixtures)

ISSUE_NAMES = (
    "kernel.core_pattern", "kernel.modprobe", "kernel.usermodehelper.bset", "kernel.usermodehelper.inheritable",
    "fs.binfmt_misc.register", "fs.binfmt_misc.status", "kernel.kexec_load_disabled",
    "kernel.unprivileged_bpf_disabled", "kernel.yama.ptrace_scope", "kernel.randomize_va_space",
    "fs.suid_dumpable", "kernel.sysrq", "kernel.poweroff_cmd", "kernel.hotplug", "kernel.core_uses_pid",
    "kernel.kptr_restrict", "kernel.dmesg_restrict", "kernel.perf_event_paranoid", "net.core.bpf_jit_harden",
    "kernel.ftrace_dump_on_oops", "dev.tty.ldisc_autoload", "vm.mmap_min_addr", "fs.protected_symlinks",
    "fs.protected_regular", "user.max_user_namespaces", "kernel.unprivileged_userns_clone", "kernel.panic",
    "kernel.panic_on_oops", "kernel.hung_task_panic", "vm.panic_on_oom", "kernel.modules_disabled",
    "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.eth0.accept_source_route",
)
TUNING_NAMES = ("net.core.somaxconn", "net.ipv4.tcp_rmem", "vm.swappiness", "vm.dirty_ratio", "kernel.pid_max",
                "kernel.sched_autogroup_enabled", "fs.file-max", "net.ipv4.tcp_syncookies", "kernel.numa_balancing",
                "net.ipv4.conf.all.arp_ignore", "kernel.threads-max")
CORE = "kernel.core_pattern"


def kernel_names():
    """Every sysctl name this kernel has (the reference for the globs)."""
    names = []
    for folder, _, files in os.walk("/proc/sys"):
        rel = os.path.relpath(folder, "/proc/sys")
        names += [(f if rel == "." else rel.replace("/", ".") + "." + f) for f in files]
    return names


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_the_dangerous_knobs_are_denied(name):
    assert denylist.denied(name)
    assert name in denylist.refusal(name)


@pytest.mark.parametrize("name", TUNING_NAMES)
def test_tuning_knobs_are_not(name):
    assert denylist.denied(name) is None


def test_no_builtin_tunable_is_denied():
    assert [t.name for t in DEFAULTS if denylist.denied(t.name)] == []


def test_the_globs_match_real_names_on_this_kernel():
    """A pattern with a typo would deny nothing: each one whose folder this kernel has must match."""
    real = kernel_names()
    for pattern, _ in denylist.DENIED:
        prefix = pattern.split("*")[0]
        if not any(n.startswith(prefix) for n in real):
            continue  # names this kernel lacks (apparmor), or a folder left empty (binfmt_misc not mounted)
        concrete = "*" not in pattern
        if concrete and not os.path.exists("/proc/sys/" + pattern.replace(".", "/")):
            continue  # e.g. kernel.hotplug on a kernel built without it
        assert [n for n in real if fnmatch.fnmatchcase(n, pattern)], pattern
    assert CORE in real and denylist.denied(CORE)


def test_the_one_regex_denies_exactly_what_the_globs_deny():
    """denied() screens every name with one regex made of all the globs: on every name this kernel
    has, and on the patterns themselves, it must agree with fnmatch pattern by pattern."""
    names = kernel_names() + [p for p, _ in denylist.DENIED] + [p.replace("*", "x.y") for p, _ in denylist.DENIED]
    for name in names:
        expected = next((why for pattern, why in denylist.DENIED if fnmatch.fnmatchcase(name, pattern)), None)
        assert denylist.denied(name) == expected, name


def spec_with(name, **bounds):
    return TuningSpec.from_dict({"workload_name": "w", "reward_metric": "tps", "benchmark_command": "pgbench -T 5",
                                 "action_space": [{"param": name, **bounds}]})


def test_a_spec_with_a_denied_knob_is_refused_even_by_a_catalog_that_lists_it():
    catalog = Catalog(list(DEFAULTS) + [Tunable("kernel.sysrq", "int", "kernel", "magic keys", (0,), (511,))])
    assert "kernel.sysrq" in catalog  # built in code, around the file reader
    with pytest.raises(SpecError, match="deny-list"):
        validate(spec_with("kernel.sysrq", min=0, max=1), catalog)


@pytest.mark.parametrize("entry", [
    {CORE: {"type": "choice", "choices": ["core"], "scope": "kernel"}},
    {"kernel.usermodehelper.bset": {"type": "vector", "min": [0, 0], "max": [1, 1]}},
    {"fs.protected_symlinks": {"type": "int", "min": 0, "max": 1}},
])
def test_a_catalog_file_that_adds_a_denied_knob_is_refused_in_one_line(tmp_path, entry):
    catalog = tmp_path / "extra.json"
    catalog.write_text(json.dumps({"tunables": entry}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"workload_name": "w", "reward_metric": "tps", "benchmark_command": "pgbench -T 5",
                                "action_space": [{"param": next(iter(entry)), "min": 0, "max": 1}]}))
    p = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--hosts", str(tmp_path / "none.yml"),
                        "--spec", str(spec), "--catalog", str(catalog), "--yes"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and "deny-list" in lines[0], p.stderr


# -- the agent refuses them too (a hostile controller sends the request by hand) ---------------

needs_ns = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture()
def agent(state, payload):
    netns = Netns()
    started = Agent(netns, state, payload)
    yield started
    started.stop()
    netns.close()


def current_core_pattern():
    return " ".join(Path("/proc/sys/kernel/core_pattern").read_text().split())


@needs_ns
def test_the_agent_refuses_core_pattern_even_with_bounds(agent, state):
    # The value sent is the current one: were the refusal missing, the write would change nothing,
    # and the reply (applied, not refused) would still show it.
    value = current_core_pattern()
    result = agent.call("apply", {"values": {CORE: value}, "bounds": {CORE: {"choices": [value]}}})
    assert result["applied"] == {}
    assert result["refused"][CORE]["type"] == "ValidationError" and "deny-list" in result["refused"][CORE]["message"]
    assert not (state / journal.JOURNAL).exists()
    reply = agent.request(7, "persist", {"values": {CORE: value}, "path": str(state / "sysctl.d" / "x.conf")})
    assert reply["ok"] is False and reply["error"]["type"] == "ValidationError"
    assert not (state / "sysctl.d" / "x.conf").exists()
    assert current_core_pattern() == value


@needs_ns
def test_a_journal_edited_to_hold_a_denied_knob_is_not_written_back(state, payload):
    value = current_core_pattern()
    state.mkdir()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (state / journal.JOURNAL).write_text(json.dumps({"format": 1, "boot_id": boot_id, "entries": [[CORE, value]]}))
    netns = Netns()
    agent = Agent(netns, state, payload)
    try:
        facts = agent.call("hello")
        assert facts["recovered"] == {}
        assert "deny-list" in facts["recover_errors"][CORE]["message"]
    finally:
        agent.stop()
        netns.close()
    assert current_core_pattern() == value
