"""The kernel settings tunefleet knows: type, safe bounds, scope, and what they do.

A spec may only turn knobs listed here, within their safe bounds: bounds a cautious SRE would
accept on a production host (never vm.dirty_bytes = 0, never somaxconn below 16). A user's own
file (``--catalog FILE``) adds tunables and narrows built-in ones; it cannot widen them, and it
cannot add a knob on the deny-list (node_agent/denylist.py), which the agent refuses as well. Its
``benchmark_tools: [k6, hey]`` adds programs a strategist's benchmark command may run (a spec the
user wrote may run any program; see controller/benchcheck.py). controller/gate.py checks a spec
against all of it.

Scope matters for fleets built on one kernel: ``netns`` knobs are per network namespace and may be
tuned on every namespace host in parallel; ``kernel`` knobs (vm.*, kernel.*, fs.*, most net.core.*)
are shared by all hosts with one boot_id, so only one of those hosts may tune them at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import coupled
from controller.errors import SpecError
from controller.fleet.facts import shared_kernels
from node_agent.denylist import refusal as denied
from node_agent.protocol import is_sysctl_name

if TYPE_CHECKING:
    from controller.spec import TuningSpec

KINDS = ("int", "vector", "choice")
SCOPES = ("netns", "kernel")
# When a new value takes effect (controller/timing.py says which a benchmark can see):
#   now            every use reads it (the next SYN, the next writeback, the next connect())
#   new_sockets    a socket takes it when it is made: connections opened after the write
#   listen         a listener takes it at listen(): a running server needs to listen again
#   process_start  a program reads it when it starts: a running server needs a restart
#   reboot         only at boot: never measurable within a run
APPLIES = ("now", "new_sockets", "listen", "process_start", "reboot")
MIN_FREE_MAX_SHARE = 0.05  # vm.min_free_kbytes above this share of RAM starves the page cache


@dataclass(frozen=True)
class Tunable:
    name: str
    kind: str                      # "int" | "vector" | "choice"
    scope: str                     # "netns" | "kernel"
    description: str
    min: tuple[int, ...] = ()      # per component; one component for "int"
    max: tuple[int, ...] = ()
    choices: tuple[str, ...] = ()
    note: str = ""
    applies: str = "now"           # see APPLIES
    kernels: Kernels | None = None  # which kernels have it, where they do not say otherwise

    @property
    def components(self) -> int:
        return 1 if self.kind == "choice" else len(self.min)

    def bounds_text(self) -> str:
        if self.kind == "choice":
            return ", ".join(self.choices)
        return f"{_fmt(self.min)}..{_fmt(self.max)}"


@dataclass(frozen=True)
class Kernels:
    """Kernel versions that have a knob in /proc/sys: from ``since`` (inclusive) to ``until``
    (exclusive), and where it went or why it may be missing. Hosts are still asked (hello describes
    every knob): this says why a host lacks one, never that a host has it."""

    since: tuple[int, ...] = ()
    until: tuple[int, ...] = ()
    note: str = ""

    def has(self, release: str) -> bool | None:
        """Whether a kernel release (``6.6.0-28.oe2403.x86_64``) should have the knob; None when the
        release does not parse."""
        version = kernel_version(release)
        if version is None:
            return None
        return (not self.since or version >= self.since) and (not self.until or version < self.until)

    def why_missing(self, release: str) -> str:
        version = kernel_version(release)
        shown = ".".join(map(str, version[:2])) if version else release
        if self.until and version is not None and version >= self.until:
            note = ": " + self.note if self.note else ""
            return f"gone since {'.'.join(map(str, self.until))}{note} (kernel {shown})"
        if self.since and version is not None and version < self.since:
            return f"added in {'.'.join(map(str, self.since))} (kernel {shown})"
        return self.note or f"not on this kernel ({shown})"


def kernel_version(release: str) -> tuple[int, ...] | None:
    """``6.6.0-28.oe2403.x86_64`` -> (6, 6, 0); None when it does not start with a version."""
    import re

    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def _fmt(values) -> str:
    return " ".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def _int(name, lo, hi, scope, description, note=""):
    return Tunable(name, "int", scope, description, (lo,), (hi,), (), note)


def _vec(name, lo, hi, scope, description, note=""):
    return Tunable(name, "vector", scope, description, tuple(lo), tuple(hi), (), note)


def _choice(name, choices, scope, description, note=""):
    return Tunable(name, "choice", scope, description, (), (), tuple(choices), note)


NETNS, KERNEL = "netns", "kernel"
NS_READONLY = "read-only inside a network namespace"

DEFAULTS: tuple[Tunable, ...] = (
    # per network namespace (MACHINE-NOTES: independent per host on one machine)
    _int("net.core.somaxconn", 16, 65535, NETNS, "cap on a listening socket's accept queue"),
    _int("net.ipv4.tcp_max_syn_backlog", 16, 65535, NETNS, "half-open connections (SYN_RECV) kept per listener"),
    _int("net.ipv4.tcp_fin_timeout", 5, 120, NETNS, "seconds an orphaned connection stays in FIN_WAIT_2"),
    _choice("net.ipv4.tcp_tw_reuse", ("0", "1", "2"), NETNS,
            "reuse TIME_WAIT sockets for new outgoing connections (2: loopback only)"),
    _choice("net.ipv4.tcp_slow_start_after_idle", ("0", "1"), NETNS,
            "restart congestion window growth after an idle period"),
    _choice("net.ipv4.tcp_congestion_control", ("cubic", "reno", "bbr", "htcp"), NETNS,
            "TCP congestion control algorithm", "must also be listed in net.ipv4.tcp_available_congestion_control"),
    _vec("net.ipv4.tcp_rmem", (4096, 4096, 4096), (65536, 33554432, 268435456), NETNS,
         "TCP receive buffer: min, default, max bytes"),
    _vec("net.ipv4.tcp_wmem", (4096, 4096, 4096), (65536, 33554432, 268435456), NETNS,
         "TCP send buffer: min, default, max bytes"),
    _vec("net.ipv4.ip_local_port_range", (1024, 10000), (60999, 65535), NETNS,
         "ephemeral ports for outgoing connections: low, high", "low must stay below high"),
    _int("net.ipv4.tcp_keepalive_time", 30, 32767, NETNS, "idle seconds before TCP keepalive probes start"),
    _int("net.ipv4.tcp_syn_retries", 2, 10, NETNS, "SYN retransmits before connect() gives up"),
    # kernel-wide
    _int("net.core.rmem_max", 212992, 268435456, KERNEL, "largest receive buffer SO_RCVBUF may ask for", NS_READONLY),
    _int("net.core.wmem_max", 212992, 268435456, KERNEL, "largest send buffer SO_SNDBUF may ask for", NS_READONLY),
    _int("net.core.rmem_default", 65536, 33554432, KERNEL, "default receive buffer of non-TCP sockets", NS_READONLY),
    _int("net.core.wmem_default", 65536, 33554432, KERNEL, "default send buffer of non-TCP sockets", NS_READONLY),
    _int("net.core.netdev_max_backlog", 300, 65536, KERNEL, "packets queued per CPU when the NIC outpaces the "
         "kernel", "absent inside a network namespace"),
    _int("vm.swappiness", 0, 100, KERNEL, "preference for swapping anonymous memory over dropping page cache"),
    _int("vm.dirty_ratio", 5, 80, KERNEL, "% of memory dirty before writers are throttled",
         "keep vm.dirty_background_ratio below it; tunefleet never writes vm.dirty_bytes"),
    _int("vm.dirty_background_ratio", 1, 50, KERNEL, "% of memory dirty before background writeback starts",
         "must stay below vm.dirty_ratio (the kernel halves dirty_ratio otherwise)"),
    _int("vm.dirty_expire_centisecs", 100, 6000, KERNEL, "age (1/100 s) at which dirty data is written back"),
    _int("vm.dirty_writeback_centisecs", 100, 3000, KERNEL, "interval (1/100 s) of the writeback threads",
         "0 would disable periodic writeback: not allowed"),
    _int("vm.vfs_cache_pressure", 10, 500, KERNEL, "how eagerly dentry/inode caches are reclaimed"),
    _int("vm.min_free_kbytes", 8192, 1048576, KERNEL, "memory kept free for atomic allocations",
         f"above {MIN_FREE_MAX_SHARE:.0%} of RAM it starves the page cache; checked against each host's memory"),
    _choice("kernel.sched_autogroup_enabled", ("0", "1"), KERNEL, "group tasks by session for CFS fairness"),
    _choice("kernel.numa_balancing", ("0", "1"), KERNEL, "automatic NUMA page migration",
            "absent on kernels built without NUMA balancing"),
    _int("fs.file-max", 524288, 9223372036854775807, KERNEL, "system-wide limit on open files",
         "below what the host uses, open() fails with ENFILE"),
    # set by the shipped expert profiles (controller/profiles/: TuneD network-latency and postgresql, redis:docs,
    # postgresql:docs); scope checked on Linux 6.x inside a network namespace (tests/unit/test_profiles.py)
    _int("net.core.busy_read", 0, 100, KERNEL, "microseconds a socket read busy-polls the device queue (0: off)",
         "absent inside a network namespace"),
    _int("net.core.busy_poll", 0, 100, KERNEL, "microseconds poll and select busy-poll the device queues (0: off)",
         "absent inside a network namespace"),
    _choice("net.ipv4.tcp_fastopen", ("0", "1", "2", "3"), NETNS,
            "TCP Fast Open: data in the SYN (1: as client, 2: as server, 3: both)"),
    _int("vm.dirty_bytes", 16777216, 8589934592, KERNEL, "bytes of dirty memory before writers are throttled",
         "writing it zeroes vm.dirty_ratio and the other way round (0 is refused); the agent restores the one "
         "of the pair that was in force"),
    _int("vm.dirty_background_bytes", 8388608, 4294967296, KERNEL,
         "bytes of dirty memory before background writeback starts",
         "must stay below vm.dirty_bytes; writing it zeroes vm.dirty_background_ratio and the other way round"),
    _choice("vm.overcommit_memory", ("0", "1", "2"), KERNEL,
            "memory overcommit: 0 heuristic, 1 always grant, 2 strict (swap + vm.overcommit_ratio % of RAM)",
            "2 makes allocations past that limit fail: on a host without swap, past half of its memory"),
    _int("vm.max_map_count", 65530, 2097152, KERNEL, "memory map areas one process may have",
         "below the kernel default 65530, programs that map many regions fail"),
)

# The scheduler's CFS tunables before EEVDF: openEuler 20.03 (4.19) and 22.03 (5.10) have them in
# /proc/sys; 5.13 moved them to debugfs (/sys/kernel/debug/sched/), where sysctl cannot reach them.
_SCHED_MOVED = Kernels(until=(5, 13), note="moved to /sys/kernel/debug/sched/ in 5.13 (not a sysctl there)")
DEFAULTS += (
    _int("kernel.sched_min_granularity_ns", 100000, 100000000, KERNEL, "CFS: shortest slice a task runs before "
         "it may be preempted (ns)"),
    _int("kernel.sched_wakeup_granularity_ns", 0, 100000000, KERNEL, "CFS: how much more a waking task must "
         "deserve before it preempts the running one (ns)"),
    _int("kernel.sched_migration_cost_ns", 0, 50000000, KERNEL, "CFS: a task that ran this recently is cache-hot "
         "and not migrated (ns)"),
    _int("kernel.sched_latency_ns", 1000000, 1000000000, KERNEL, "CFS: the period in which every runnable task "
         "runs once (ns)"),
    _int("net.ipv4.tcp_notsent_lowat", 16384, 4294967295, NETNS, "unsent bytes a socket queues before it stops "
         "being writable (4294967295: no limit)"),
    _choice("net.core.default_qdisc", ("pfifo_fast", "fq", "fq_codel"), KERNEL, "queueing discipline new network "
            "interfaces get", "applies to interfaces set up after the write: a reboot; absent inside a namespace"),
)

# When a new value of each knob takes effect (default "now"): a run restarts what it measures when
# its knobs need it (controller/timing.py).
APPLIES_AT = {
    "net.core.somaxconn": "listen",
    "net.ipv4.tcp_congestion_control": "new_sockets",
    "net.ipv4.tcp_rmem": "new_sockets",
    "net.ipv4.tcp_wmem": "new_sockets",
    "net.core.rmem_max": "new_sockets",
    "net.core.wmem_max": "new_sockets",
    "net.core.rmem_default": "new_sockets",
    "net.core.wmem_default": "new_sockets",
    "net.core.default_qdisc": "reboot",
}
KERNELS = {name: _SCHED_MOVED for name in ("kernel.sched_min_granularity_ns", "kernel.sched_wakeup_granularity_ns",
                                            "kernel.sched_migration_cost_ns", "kernel.sched_latency_ns")}
DEFAULTS = tuple(replace(t, applies=APPLIES_AT.get(t.name, t.applies), kernels=KERNELS.get(t.name, t.kernels))
                 for t in DEFAULTS)

# Knobs whose choices a host may not offer, and the knob that lists what it offers.
AVAILABLE_FROM = {"net.ipv4.tcp_congestion_control": "net.ipv4.tcp_available_congestion_control"}
# ... and what a network namespace other than the machine's first may pick from (the kernel refuses
# the others there: only the first namespace sets a restricted algorithm as its default)
ALLOWED_IN_NAMESPACE = {"net.ipv4.tcp_congestion_control": "net.ipv4.tcp_allowed_congestion_control"}


class _default_or_self:
    """``Catalog.load_extra(path)`` extends the default catalog; ``catalog.load_extra(path)`` that one."""

    def __init__(self, func):
        self.func = func

    def __get__(self, obj, cls):
        return functools.partial(self.func, obj if obj is not None else cls.default())


class Catalog:
    def __init__(self, tunables: Iterable[Tunable] = (), benchmark_tools: Iterable[str] = ()) -> None:
        self._tunables: dict[str, Tunable] = {t.name: t for t in tunables}
        # programs the user allows a strategist's benchmark to run, beyond benchcheck.KNOWN_TOOLS
        self.benchmark_tools: tuple[str, ...] = tuple(dict.fromkeys(benchmark_tools))

    @classmethod
    def default(cls) -> Catalog:
        return cls(DEFAULTS)

    def get(self, name: str) -> Tunable | None:
        return self._tunables.get(name)

    def names(self) -> list[str]:
        return sorted(self._tunables)

    def __iter__(self):
        return iter(self._tunables.values())

    def __len__(self) -> int:
        return len(self._tunables)

    def __contains__(self, name) -> bool:
        return name in self._tunables

    @_default_or_self
    def load_extra(self, path: str | Path) -> Catalog:
        """A new catalog: this one plus the tunables and benchmark_tools in ``path``, built-in ones only narrowed."""
        merged = dict(self._tunables)
        tunables, tools = _read_extra(Path(path), self._tunables)
        merged.update(tunables)
        return Catalog(merged.values(), self.benchmark_tools + tools)

    def kernel_wide(self, names) -> list[str]:
        """The names that one kernel shares among all its namespaces (unknown names count as such)."""
        return [n for n in dict.fromkeys(names)
                if is_sysctl_name(n) and getattr(self.get(n), "scope", KERNEL) == KERNEL]

    # --- checks ---------------------------------------------------------------------------

    def check_spec(self, spec: TuningSpec) -> list[str]:
        """Problems with the spec's knobs that no host can fix, one line each."""
        problems, seen = [], set()
        for i, knob in enumerate(spec.action_space):
            name = knob.param
            if not is_sysctl_name(name):
                problems.append(f"action_space[{i}]: {name[:80]!r} is not a plain sysctl name "
                                "(dotted words like net.core.somaxconn, nothing else)")
                continue
            if name in seen:
                problems.append(f"{name}: listed twice in action_space")
                continue
            seen.add(name)
            if refusal := denied(name):
                problems.append(refusal)
                continue
            tunable = self.get(name)
            if tunable is None:
                problems.append(f"{name}: not a tunable tunefleet knows; add it with --catalog FILE "
                                "(type, safe bounds, scope)")
                continue
            problems += _check_knob(knob, tunable)
        return problems + coupled.problems(spec.action_space)

    def check_hosts(self, spec: TuningSpec, facts: dict[str, dict]) -> list[str]:
        """Problems with the spec on these hosts (name -> hello facts), one line each."""
        problems = []
        hosts = sorted(facts)
        for name in dict.fromkeys(spec.knob_names):
            if not is_sysctl_name(name):
                continue
            tunable = self.get(name)
            state = {h: ((facts[h] or {}).get("knobs") or {}).get(name) for h in hosts}
            unreported = [h for h, st in state.items() if not isinstance(st, dict)]
            missing = [h for h, st in state.items() if isinstance(st, dict) and not st.get("exists")]
            readonly = [h for h, st in state.items() if isinstance(st, dict) and st.get("exists")
                        and not st.get("writable")]
            if unreported:
                problems.append(f"{name}: not reported by {', '.join(unreported)} (the host facts do not say "
                                "whether it exists)")
            if missing:
                why = f" ({tunable.note})" if tunable and tunable.note.startswith("absent") else ""
                problems.append(f"{name}: missing on {', '.join(missing)}{why}; remove it from the spec or "
                                "use --limit to leave those hosts out")
            if readonly:
                why = f" ({tunable.note})" if tunable and tunable.note == NS_READONLY else ""
                problems.append(f"{name}: not writable on {', '.join(readonly)}{why}")
            problems += _check_available(spec.knob(name), facts, hosts)
        problems += _check_memory(spec, facts, hosts)
        problems += self._check_shared_kernels(spec, facts, hosts)
        return problems

    def _check_shared_kernels(self, spec: TuningSpec, facts, hosts) -> list[str]:
        kernel_wide = self.kernel_wide(spec.knob_names)
        if not kernel_wide:
            return []
        what = "knob" if len(kernel_wide) == 1 else "knobs"
        return [f"{', '.join(group)} share one kernel (boot_id {boot_id[:8]}…): kernel-wide {what} "
                f"{', '.join(kernel_wide)} cannot be tuned on them in parallel; use --limit to pick one of them"
                for boot_id, group in shared_kernels({h: facts[h] for h in hosts}).items()]

    def advice(self, spec: TuningSpec) -> list[str]:
        """Not errors, but worth saying before a run."""
        out = []
        bg, dirty = spec.knob("vm.dirty_background_ratio"), spec.knob("vm.dirty_ratio")
        if bg is not None and dirty is not None and not bg.is_choice and not dirty.is_choice:
            if max(bg.upper) >= min(dirty.lower):
                out.append("vm.dirty_background_ratio may reach vm.dirty_ratio in these ranges; such candidates "
                           "are repaired by raising vm.dirty_ratio above it (or lowering the background ratio)")
        return out


def lacking(catalog: Catalog, facts: dict) -> dict[str, str]:
    """Knob -> why this host (its hello facts) has no such sysctl: the catalog's word on which
    kernels have it, or its note (absent inside a network namespace)."""
    out = {}
    for name, state in ((facts or {}).get("knobs") or {}).items():
        tunable = catalog.get(name)
        if tunable is None or not isinstance(state, dict) or state.get("exists"):
            continue
        if tunable.kernels is not None:
            out[name] = tunable.kernels.why_missing(facts.get("kernel", ""))
        else:
            out[name] = tunable.note if tunable.note.startswith("absent") else "not in /proc/sys on this kernel"
    return out


def _check_knob(knob, t: Tunable) -> list[str]:
    """A spec knob against its tunable: shape, choices, safe bounds."""
    name = knob.param
    if t.kind == "choice":
        if knob.is_choice:
            bad = [v for v in knob.values if v not in t.choices]
        elif knob.components != 1:
            return [f"{name}: takes one value, the spec gives {knob.components} components"]
        elif knob.upper[0] - knob.lower[0] > len(t.choices):
            bad = [f"{knob.lower[0]}..{knob.upper[0]}"]
        else:
            bad = [str(v) for v in range(knob.lower[0], knob.upper[0] + 1) if str(v) not in t.choices]
        if bad:
            return [f"{name}: {', '.join(repr(b) for b in bad)} not allowed (allowed: {', '.join(t.choices)})"]
        return []
    if knob.is_choice:
        from controller.knob import parse_ints  # here: numpy and pydantic, which the catalog alone needs not

        problems = []
        for v in knob.values:
            try:
                ints = parse_ints(v)
            except ValueError:
                ints = []
            if len(ints) != t.components or not all(lo <= x <= hi for x, lo, hi in zip(ints, t.min, t.max)):
                problems.append(f"{name}: choice {v!r} is outside the safe bounds {t.bounds_text()}")
        return problems
    if knob.components != t.components:
        return [f"{name}: takes {t.components} component(s) like {_fmt(t.min)!r}, the spec gives {knob.components}"]
    if any(lo < b for lo, b in zip(knob.lower, t.min)) or any(hi > b for hi, b in zip(knob.upper, t.max)):
        return [f"{name}: range {_fmt(knob.lower)}..{_fmt(knob.upper)} is outside the safe bounds {t.bounds_text()}"]
    return []


def offered(name: str, facts: dict) -> tuple[list[str], str] | None:
    """The values of a choice knob a host can take and where that list comes from (None: unknown)."""
    knobs = (facts or {}).get("knobs") or {}
    source = AVAILABLE_FROM.get(name)
    if source is None:
        return None
    if facts.get("netns_init") is False and name in ALLOWED_IN_NAMESPACE:
        source = ALLOWED_IN_NAMESPACE[name]
    value = (knobs.get(source) or {}).get("value")
    return (value.split(), source) if value is not None else None


def _check_available(knob, facts, hosts) -> list[str]:
    if knob is None or not knob.is_choice or knob.param not in AVAILABLE_FROM:
        return []
    problems = []
    for h in hosts:
        got = offered(knob.param, facts[h] or {})
        if got is None:
            continue
        values, source = got
        absent = [v for v in knob.values if v not in values]
        if absent:
            problems.append(f"{knob.param}: {', '.join(absent)} not available on {h} ({source}: {' '.join(values)})")
    return problems


def _check_memory(spec: TuningSpec, facts, hosts) -> list[str]:
    knob = spec.knob("vm.min_free_kbytes")
    if knob is None or knob.is_choice:
        return []
    problems = []
    for h in hosts:
        total = (facts[h] or {}).get("mem_total_kb")
        if isinstance(total, (int, float)) and total > 0 and knob.upper[0] > total * MIN_FREE_MAX_SHARE:
            problems.append(f"vm.min_free_kbytes: max {knob.upper[0]} is more than {MIN_FREE_MAX_SHARE:.0%} of "
                            f"the memory of {h} ({int(total)} kB)")
    return problems


# --- a user's catalog file ------------------------------------------------------------------

ENTRY_FIELDS = {"type", "min", "max", "choices", "scope", "description", "note", "applies"}


def _read_extra(path: Path, builtin: dict[str, Tunable]) -> tuple[dict[str, Tunable], tuple[str, ...]]:
    from controller.spec import parse_document  # here: numpy and pydantic, for a catalog file only

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the catalog file: {getattr(e, 'strerror', None) or e}") from None
    doc = parse_document(text, path)
    tools = _benchmark_tools(doc.pop("benchmark_tools", ()) if isinstance(doc, dict) else (), path)
    entries = doc.get("tunables", doc) if isinstance(doc, dict) else doc
    if tools and entries == {}:
        return {}, tools
    if isinstance(entries, list):
        if not all(isinstance(e, dict) and "name" in e for e in entries):
            raise SpecError(f"{path}: tunables: every entry of the list needs a name")
        entries = {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in entries}
    if not isinstance(entries, dict) or not entries:
        raise SpecError(f"{path}: expected `tunables:` mapping sysctl names to {{type, min, max, choices, scope, "
                        "description}}")
    out = {}
    for name, fields in entries.items():
        where = f"{path}: tunables.{name}"
        try:
            out[name] = _entry(str(name), fields, builtin.get(name))
        except ValueError as e:
            raise SpecError(f"{where}{e}") from None
    return out, tools


def _benchmark_tools(raw, path: Path) -> tuple[str, ...]:
    """`benchmark_tools: [k6, hey]`: program names a strategist's benchmark may run besides the known tools."""
    if raw is None or raw == ():
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, str) and t and "/" not in t and t == t.strip()
                                            and not any(c.isspace() for c in t) for t in raw):
        raise SpecError(f"{path}: benchmark_tools: must be a list of program names (k6, hey), without paths")
    return tuple(raw)


def _entry(name: str, fields: Any, base: Tunable | None) -> Tunable:
    """One entry; raises ValueError('.field: message') (or ': message')."""
    from controller.knob import parse_ints  # here: numpy and pydantic, which the catalog alone needs not

    if not is_sysctl_name(name):
        raise ValueError(": not a plain sysctl name")
    if refusal := denied(name):
        raise ValueError(f": {refusal}")
    if not isinstance(fields, dict):
        raise ValueError(": must be a mapping of type, min, max, choices, scope, description")
    unknown = sorted(set(fields) - ENTRY_FIELDS)
    if unknown:
        raise ValueError(f".{unknown[0]}: unknown field (known: {', '.join(sorted(ENTRY_FIELDS))})")
    kind = fields.get("type") or (base.kind if base else ("choice" if "choices" in fields else None))
    if kind not in KINDS:
        raise ValueError(f".type: must be one of {', '.join(KINDS)}")
    scope = fields.get("scope", base.scope if base else KERNEL)
    if scope not in SCOPES:
        raise ValueError(f".scope: must be one of {', '.join(SCOPES)}")
    applies = fields.get("applies", base.applies if base else "now")
    if applies not in APPLIES:
        raise ValueError(f".applies: must be one of {', '.join(APPLIES)}")
    t = Tunable(name, kind, scope, str(fields.get("description", base.description if base else "")),
                note=str(fields.get("note", base.note if base else "")), applies=applies,
                kernels=base.kernels if base else None)
    if kind == "choice":
        choices = fields.get("choices", list(base.choices) if base else None)
        if not isinstance(choices, list) or not choices or any(isinstance(c, (bool, dict, list)) for c in choices):
            raise ValueError(".choices: must be a non-empty list")
        t = replace(t, choices=tuple(" ".join(str(c).split()) for c in choices))
    else:
        bounds = {}
        for side in ("min", "max"):
            raw = fields.get(side, list(getattr(base, side)) if base else None)
            if raw is None:
                raise ValueError(f".{side}: missing (required for type {kind})")
            try:
                bounds[side] = tuple(parse_ints(raw, side))
            except ValueError as e:
                raise ValueError(f".{side}: {e}") from None
        lo, hi = bounds["min"], bounds["max"]
        if len(lo) != len(hi) or (kind == "int") != (len(lo) == 1):
            raise ValueError(".max: min and max need the same number of components (one for type int)")
        if any(b < a for a, b in zip(lo, hi)):
            raise ValueError(".max: must be >= min")
        t = replace(t, min=lo, max=hi)
    if base is not None:
        _narrows(t, base)
    return t


def _narrows(t: Tunable, base: Tunable) -> None:
    if t.kind != base.kind:
        raise ValueError(f".type: the built-in entry is {base.kind}; an extra catalog may only narrow it")
    if base.scope == KERNEL and t.scope == NETNS:
        raise ValueError(".scope: a kernel-wide knob cannot be declared per namespace")
    if t.kind == "choice":
        extra = [c for c in t.choices if c not in base.choices]
        if extra:
            raise ValueError(f".choices: {', '.join(extra)} widens the built-in choices ({', '.join(base.choices)})")
        return
    if len(t.min) != len(base.min):
        raise ValueError(f".min: the built-in entry has {len(base.min)} component(s)")
    if any(a < b for a, b in zip(t.min, base.min)):
        raise ValueError(f".min: {_fmt(t.min)} widens the built-in safe bound {_fmt(base.min)}")
    if any(a > b for a, b in zip(t.max, base.max)):
        raise ValueError(f".max: {_fmt(t.max)} widens the built-in safe bound {_fmt(base.max)}")
