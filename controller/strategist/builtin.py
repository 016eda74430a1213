"""The built-in strategist: a small catalog of workloads, matched to a goal by its words.

Offline and deterministic. Each workload is a benchmark with a measured signal, the reward it
prints, the knobs worth turning for it with a reason each, and what the hosts need (tools as named
in hello's ``tools``, services as in hello's ``services``). ``plan(goal, facts)`` picks the workload
whose keywords the goal matches best and says which words decided it.

Planners plan within the hosts' facts: on hosts that share one kernel (same boot_id) a kernel-wide
knob cannot take a value per host, so ``leave_out_kernel_wide`` takes such knobs out of the spec
and says which and why, instead of handing on a spec the validation would refuse.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from dataclasses import dataclass, field

from controller.catalog import Catalog, shared_kernels
from controller.errors import SpecError
from controller.spec import TuningSpec

PGBENCH = "pgbench -h 127.0.0.1 -U pgbench -c 8 -j 2 -T 10 pgbench"
PG_ADAPT = ("Adapt -h/-U and the database name (last argument) to your server; initialize the tables once "
            "by hand with `pgbench -i -s 5 pgbench` (deploy/bootstrap-node.sh --postgres and the local fleet "
            "both make a database and role named pgbench, reachable on 127.0.0.1).")
SERVICE_HINTS = {"postgresql": "nothing listens on TCP 5432"}


def _knob(param: str, rationale: str, **range_) -> dict:
    return {"param": param, **range_, "rationale": rationale}


def _prior(reason: str, **values) -> dict:
    """An expert's first configuration for a workload (controller/learn/priors.py)."""
    return {"values": values, "reason": reason}


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    description: str
    keywords: dict[str, int]          # word or phrase -> weight
    spec_data: dict
    tools: tuple[str, ...] = ()       # as in hello's `tools`; built-in benchmarks need none
    services: tuple[str, ...] = ()    # as in hello's `services`
    caveats: tuple[str, ...] = ()     # said with every plan of this workload
    notes: str = ""                   # how to adapt it to your hosts

    @property
    def spec(self) -> TuningSpec:
        """A fresh spec each time: callers may change theirs."""
        text = f"{self.description} {self.notes}".strip()
        return TuningSpec.from_dict({"workload_name": self.name, "description": text, **self.spec_data},
                                    f"built-in workload {self.key}")

    @property
    def rationale(self) -> dict[str, str]:
        return {k["param"]: k.get("rationale", "") for k in self.spec_data["action_space"]}


@dataclass
class Plan:
    spec: TuningSpec
    workload: str                     # the workload's key
    reason: str                       # which words matched
    rationale: dict[str, str]         # knob -> why it is in the plan
    warnings: list[str] = field(default_factory=list)
    strategist: str = "builtin"
    notes: list[str] = field(default_factory=list)            # what the planner decided for the user, and why
    left_out: dict[str, str] = field(default_factory=dict)    # knob -> why the facts kept it out of the spec


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "pg-oltp", "PostgreSQL OLTP",
        "pgbench TPC-B-like transactions (8 clients, 10 s) against PostgreSQL; reward: tps.",
        {"postgres": 3, "pgbench": 3, "database": 2, "db": 2, "oltp": 3, "transaction": 2, "sql": 1},
        {"reward_metric": "transactions_per_second", "benchmark_command": PGBENCH, "benchmark_timeout": 60,
         "action_space": [
             _knob("vm.dirty_ratio", "how much dirty page cache writers may build up before they are throttled; "
                   "matters when WAL and checkpoints write faster than the disk absorbs", min=5, max=60),
             _knob("vm.dirty_background_ratio", "when background writeback starts; lower smooths checkpoints",
                   min=1, max=30),
             _knob("vm.swappiness", "keep PostgreSQL's shared buffers and backends out of swap", min=0, max=100),
             _knob("net.core.somaxconn", "accept queue of the postmaster's listener for client bursts",
                   min=128, max=4096)],
         "state_space": [{"metric": m} for m in ("cpu_util", "cpu_iowait", "psi_io_some", "ctxt_per_s")],
         "initial_candidates": [_prior("smaller dirty thresholds spread checkpoint writes out; little swapping",
                                       **{"vm.dirty_ratio": 15, "vm.dirty_background_ratio": 5,
                                          "vm.swappiness": 10, "net.core.somaxconn": 1024})]},
        tools=("pgbench",), services=("postgresql",), notes=PG_ADAPT,
        caveats=("at a small scale (data in RAM, 10 s runs) the vm.dirty_* knobs often show no effect beyond "
                 "pgbench's ~3% noise: expect 'no significant improvement' unless the data outgrows memory",)),
    Workload(
        "pg-connect", "PostgreSQL with many short connections",
        "pgbench -C: a new TCP connection per transaction, like an application without a pool; reward: tps.",
        {"postgres": 3, "pgbench": 2, "short connection": 5, "short lived": 3, "many connection": 3,
         "new connection": 3, "reconnect": 4, "connection per": 4, "connect": 1, "pool": 2, "pgbouncer": 2},
        {"reward_metric": "transactions_per_second", "benchmark_command": PGBENCH.replace(" -c 8", " -C -c 8"),
         "benchmark_timeout": 60,
         "action_space": [
             _knob("net.core.somaxconn", "connection bursts overflow a short accept queue (1 s SYN retransmit)",
                   min=128, max=4096, scale="log"),
             _knob("net.ipv4.tcp_max_syn_backlog", "half-open connections kept while the postmaster forks",
                   min=128, max=4096, scale="log"),
             _knob("net.ipv4.tcp_fin_timeout", "how long closed connections hold resources in FIN_WAIT_2",
                   min=5, max=60),
             _knob("net.ipv4.tcp_tw_reuse", "lets the client reuse TIME_WAIT ports for new connections",
                   values=["0", "1", "2"]),
             _knob("net.ipv4.ip_local_port_range", "more ephemeral ports before TIME_WAIT exhausts them "
                   "(the upper end stays fixed)", min="1024 60999", max="32768 60999")],
         "state_space": [{"metric": m} for m in ("cpu_util", "tcp_active_opens_per_s", "tcp_listen_overflows",
                                                 "ctxt_per_s")],
         "initial_candidates": [_prior("full queues for connection bursts, quick FIN_WAIT_2, TIME_WAIT reuse, "
                                       "every ephemeral port", **{
             "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096, "net.ipv4.tcp_fin_timeout": 15,
             "net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 60999"})]},
        tools=("pgbench",), services=("postgresql",), notes=PG_ADAPT,
        caveats=("with 8 clients the connection rate rarely exhausts ports or backlogs; raise -c to stress them",)),
    Workload(
        "web", "Web server (HTTP requests)",
        "ab: 20000 HTTP requests from 64 concurrent clients, a new connection each; reward: requests/s.",
        {"web": 3, "website": 3, "http": 3, "nginx": 4, "apache": 4, "server": 1, "request": 1,
         "requests per second": 3, "ab": 2},
        {"reward_metric": "requests_per_second", "benchmark_command": "ab -r -n 20000 -c 64 http://127.0.0.1/",
         "benchmark_timeout": 120,
         "action_space": [
             _knob("net.core.somaxconn", "the web server's accept queue under a burst of clients",
                   min=128, max=4096, scale="log"),
             _knob("net.ipv4.tcp_max_syn_backlog", "half-open connections kept per listener",
                   min=128, max=4096, scale="log"),
             _knob("net.ipv4.tcp_fin_timeout", "how fast closed connections free their resources", min=5, max=60),
             _knob("net.ipv4.tcp_tw_reuse", "reuse of TIME_WAIT ports by the load generator",
                   values=["0", "1", "2"])],
         "state_space": [{"metric": m} for m in ("cpu_util", "tcp_passive_opens_per_s", "tcp_listen_overflows",
                                                 "tcp_listen_drops")],
         "initial_candidates": [_prior("the usual busy web server settings: long accept and SYN queues, "
                                       "quick FIN_WAIT_2, TIME_WAIT reuse", **{
             "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096, "net.ipv4.tcp_fin_timeout": 15,
             "net.ipv4.tcp_tw_reuse": "1"})]},
        tools=("ab",), notes="Point the URL at your server (ab needs a path, e.g. http://127.0.0.1:8080/).",
        caveats=("the default URL http://127.0.0.1/ must be served on every host; change it in the spec",)),
    Workload(
        "connection-storm", "Connection storm (accept backlog)",
        "built-in: 256 loopback clients connect at once; reward: ms until all are accepted (lower is better).",
        {"new connection": 4, "connect": 2, "accept": 3, "backlog": 3, "storm": 4, "burst": 3, "syn": 3,
         "handshake": 3, "somaxconn": 4, "listen": 2, "spike": 2, "thundering herd": 4},
        {"reward_metric": "elapsed_ms", "reward_goal": "minimize",
         "benchmark_command": "tunefleet-bench accept-storm --clients 256", "benchmark_timeout": 60,
         "action_space": [
             # The floor is 64, not the catalog's 16: far below the burst size, clients wait through
             # the 1 s, 3 s, 7 s retransmit ladder and one evaluation costs tens of seconds.
             _knob("net.core.somaxconn", "caps the accept queue: when it is shorter than the burst, dropped SYNs "
                   "cost a 1 s retransmit", min=64, max=4096, scale="log"),
             _knob("net.ipv4.tcp_max_syn_backlog", "half-open connections kept during the burst",
                   min=64, max=4096, scale="log")],
         "state_space": [{"metric": m} for m in ("tcp_listen_overflows", "tcp_listen_drops", "tcp_retrans_per_s")],
         "initial_candidates": [_prior("queues longer than the 256-client burst: no SYN is dropped",
                                       **{"net.core.somaxconn": 1024, "net.ipv4.tcp_max_syn_backlog": 1024})]},
        notes="Needs no tool or server: the agent runs it. Raise --clients to model bigger bursts."),
    Workload(
        "cpu", "CPU bound (null workload)",
        "sysbench cpu (primes, 2 threads, 10 s); reward: events/s. A control: no sysctl should move it.",
        {"cpu": 4, "cpu bound": 2, "compute": 3, "processor": 3, "scheduler": 2, "number crunching": 3,
         "calculation": 2, "null workload": 4, "sysbench": 1},
        {"reward_metric": "events_per_second", "benchmark_command": "sysbench cpu --threads=2 --time=10 run",
         "benchmark_timeout": 60,
         "action_space": [
             _knob("kernel.sched_autogroup_enabled", "groups tasks by session for fairness; matters for "
                   "interactive mixes, not for one batch job", values=["0", "1"]),
             _knob("vm.swappiness", "irrelevant to a CPU loop: should show no effect", min=0, max=100)],
         "state_space": [{"metric": m} for m in ("cpu_util", "ctxt_per_s", "procs_running")]},
        tools=("sysbench",), notes="Match --threads to the hosts' CPUs. Its noise is about 0.2%.",
        caveats=("a null workload: any 'improvement' beyond noise here would be a measurement artefact",)),
    Workload(
        "fileio", "File I/O (page cache writeback)",
        "sysbench fileio random writes without fsync over 2 GiB of files, 10 s; reward: events/s.",
        {"file": 2, "fileio": 4, "disk": 3, "io": 3, "storage": 3, "write": 2, "writeback": 4, "dirty": 3,
         "fsync": 3, "ssd": 3, "nvme": 3, "iops": 3, "filesystem": 2},
        {"reward_metric": "events_per_second",
         "benchmark_command": "sysbench fileio --file-total-size=2G --file-test-mode=rndwr --file-fsync-freq=0 "
                              "--time=10 run",
         "benchmark_cwd": "/var/tmp/tunefleet-fileio", "benchmark_timeout": 90,
         "action_space": [
             _knob("vm.dirty_ratio", "dirty data allowed before writers block", min=5, max=60),
             _knob("vm.dirty_background_ratio", "when background writeback starts", min=1, max=30),
             _knob("vm.dirty_expire_centisecs", "age at which dirty data must be written", min=500, max=6000),
             _knob("vm.dirty_writeback_centisecs", "how often the writeback threads wake", min=100, max=1500)],
         "state_space": [{"metric": m} for m in ("cpu_iowait", "psi_io_some", "psi_io_full", "mem_used_pct")],
         "initial_candidates": [_prior("let random writes collect in the page cache and go out in larger batches",
                                       **{"vm.dirty_ratio": 40, "vm.dirty_background_ratio": 10,
                                          "vm.dirty_expire_centisecs": 3000, "vm.dirty_writeback_centisecs": 500})]},
        tools=("sysbench",),
        notes="Prepare the files once per host: `mkdir -p /var/tmp/tunefleet-fileio && cd /var/tmp/tunefleet-fileio "
              "&& sysbench fileio --file-total-size=2G prepare`; keep the folder on the disk you care about.",
        caveats=("sysbench fileio needs its test files: run the prepare step in the description once per host",)),
    Workload(
        "stream", "Network throughput (bulk TCP transfer)",
        "built-in: 64 MiB TCP transfers over loopback, median of 3; reward: MB/s.",
        {"throughput": 2, "network throughput": 4, "bulk": 3, "transfer": 3, "bandwidth": 3, "download": 2,
         "upload": 2, "tcp buffer": 4, "rmem": 4, "wmem": 4, "stream": 3, "network": 2},
        {"reward_metric": "throughput_mb_s", "benchmark_command": "tunefleet-bench stream --mb 32 --rounds 3 --timeout 5",
         "benchmark_timeout": 60,
         "action_space": [
             _knob("net.ipv4.tcp_rmem", "receive buffer default and ceiling bound the TCP window",
                   min="4096 4096 4096", max="4096 131072 6291456"),
             _knob("net.ipv4.tcp_wmem", "send buffer default and ceiling bound data in flight",
                   min="4096 4096 4096", max="4096 65536 4194304")],
         "state_space": [{"metric": m} for m in ("net_rx_mb_per_s", "tcp_retrans_per_s", "cpu_util")],
         "initial_candidates": [_prior("the largest buffers this range allows: the window never limits a bulk "
                                       "transfer", **{"net.ipv4.tcp_rmem": "4096 131072 6291456",
                                                       "net.ipv4.tcp_wmem": "4096 65536 4194304"})]},
        notes="Loopback has no RTT: it shows the buffer effect, not what a long-distance path needs."),
)


def workloads() -> list[Workload]:
    return list(WORKLOADS)


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("i/o", "io")
    return re.findall(r"[a-z0-9]+", text)


def _word_matches(token: str, word: str) -> bool:
    # short words must match exactly ("io", "db", "ab"); longer ones also match inflections
    return token == word or (len(word) >= 4 and token.startswith(word))


def _matches(tokens: list[str], phrase: str) -> bool:
    words = phrase.split()
    return any(all(_word_matches(tokens[i + j], w) for j, w in enumerate(words))
               for i in range(len(tokens) - len(words) + 1))


def score(goal: str, workload: Workload) -> tuple[int, list[str]]:
    tokens = _tokens(goal)
    matched = [p for p in workload.keywords if _matches(tokens, p)]
    total = sum(workload.keywords[p] for p in matched)
    named = goal.strip().lower() == workload.key or (
        "-" in workload.key and re.search(rf"(?<![\w-]){re.escape(workload.key)}(?![\w-])", goal.lower()))
    if named:  # `tunefleet plan connection-storm`
        total += 10
        if workload.key not in matched:
            matched.insert(0, workload.key)
    return total, matched


def plan(goal: str, facts: dict | None = None, catalog: Catalog | None = None) -> Plan:
    """The best-matching workload for ``goal``; ``facts`` (host -> hello facts) add warnings and
    leave out the knobs those hosts cannot tune in parallel."""
    scored = [(score(goal, w), i, w) for i, w in enumerate(WORKLOADS)]
    best = max(scored, key=lambda s: (s[0][0], -s[1]))
    (points, matched), _, workload = best
    if points <= 0:
        known = "; ".join(f"{w.key} ({w.name})" for w in WORKLOADS)
        raise SpecError(f"no built-in workload matches {goal!r}: known workloads are {known}. Use their words in "
                        "the goal, or write a spec file and pass --spec FILE")
    reason = f"matched {', '.join(repr(m) for m in matched)}"
    others = sorted(((p, -i, w.key) for (p, _), i, w in scored if 0 < p and w is not workload), reverse=True)
    if others:
        reason += "; also matched: " + ", ".join(f"{key} ({p})" for p, _, key in others)
    reason = f"{workload.key} scored {points}: " + reason
    warnings = list(workload.caveats) + _host_warnings(workload, facts or {})
    left_out = leave_out_kernel_wide(workload.spec, facts, catalog)
    if not left_out:
        return Plan(workload.spec, workload.key, reason, workload.rationale, warnings)
    return _plan_without(workload, left_out, reason, warnings, facts, catalog, [key for _, _, key in others])


def _plan_without(workload: Workload, left_out: dict[str, str], reason: str, warnings: list[str], facts,
                  catalog, also_matched: list[str]) -> Plan:
    """The workload's plan without the knobs these hosts cannot tune, or a clear refusal when none is left."""
    per_namespace = [w.key for w in WORKLOADS if not leave_out_kernel_wide(w.spec, facts, catalog)]
    kept = [n for n in workload.spec.knob_names if n not in left_out]
    if not kept:
        raise SpecError(f"{workload.key}: every knob it tunes ({', '.join(left_out)}) is kernel-wide, and "
                        f"{_sharing(facts)} share one kernel: nothing is left to tune on them in parallel; "
                        f"tune one host alone (--limit {single_host(facts)}), or choose a workload with "
                        f"per-namespace knobs ({', '.join(per_namespace)})")
    rationale = {**{n: workload.rationale[n] for n in kept},
                 **{n: f"left out: {why}" for n, why in left_out.items()}}
    note = left_out_note(left_out, facts)
    better = [k for k in also_matched if k in per_namespace]
    if better:
        note += f"; {better[0]} also matches the goal and tunes per-namespace knobs only"
    warnings = [w for w in warnings if not _only_about(w, kept)]
    return Plan(without(workload.spec, left_out), workload.key, reason, rationale, warnings, notes=[note],
                left_out=left_out)


def _only_about(caveat: str, kept: list[str]) -> bool:
    """Whether a caveat names knobs (``vm.dirty_*``) of which none stays in the plan."""
    named = re.findall(r"\b(?:vm|kernel|net|fs)\.[\w.*]+", caveat)
    return bool(named) and not any(fnmatch(k, pattern) for pattern in named for k in kept)


# --- planning within the hosts' facts -----------------------------------------------------------

def _sharing(facts) -> str:
    return "; ".join(", ".join(group) for group in shared_kernels(facts or {}).values())


def single_host(facts) -> str:
    """A host to tune alone when the kernel-wide knobs matter: the first of the first sharing group."""
    return next(iter(shared_kernels(facts or {}).values()))[0]


def leave_out_kernel_wide(spec, facts: dict | None, catalog: Catalog | None = None) -> dict[str, str]:
    """Knob -> why it must stay out of ``spec`` on these hosts: the catalog's kernel-wide knobs, when
    two or more hosts share one kernel. Empty when every knob fits (or the hosts were not given)."""
    if not shared_kernels(facts or {}):
        return {}
    catalog = catalog if catalog is not None else Catalog.default()
    why = (f"kernel-wide, and {_sharing(facts)} share one kernel (same boot_id): one write changes it for all "
           "of them, so it cannot take a value per host")
    return {n: why for n in catalog.kernel_wide(spec.knob_names) if n in catalog}


def left_out_note(left_out: dict[str, str], facts) -> str:
    return (f"left out {', '.join(left_out)}: {next(iter(left_out.values()))}; to tune "
            f"{'it' if len(left_out) == 1 else 'them'}, run on one host alone (--limit {single_host(facts)})")


def without(spec: TuningSpec, names) -> TuningSpec:
    """The same spec without the knobs in ``names``."""
    data = spec.to_dict()
    data["action_space"] = [k for k in data["action_space"] if k["param"] not in names]
    data["initial_candidates"] = [c for c in (_prior_without(c, names) for c in data.get("initial_candidates", []))
                                  if c["values"]]
    return TuningSpec.from_dict(data, f"the plan for {spec.workload_name!r}")


def _prior_without(candidate: dict, names) -> dict:
    """An expert prior without the knobs in ``names``; its reason says which of its values went, since
    it may be about them (a prior left with no value is dropped by the caller)."""
    gone = [k for k in candidate["values"] if k in names]
    if not gone:
        return candidate
    reason = candidate.get("reason") or ""
    return {**candidate, "values": {k: v for k, v in candidate["values"].items() if k not in names},
            "reason": f"{reason} (without its {', '.join(gone)}: left out of this plan)".strip()}


def _host_warnings(workload: Workload, facts: dict) -> list[str]:
    out = []
    hosts = sorted(h for h, f in facts.items() if isinstance(f, dict))
    for tool in workload.tools:
        lacking = [h for h in hosts if isinstance(facts[h].get("tools"), dict) and not facts[h]["tools"].get(tool)]
        if lacking:
            out.append(f"{tool} is not installed on {', '.join(lacking)}; the benchmark cannot run there")
    for service in workload.services:
        down = [h for h in hosts if isinstance(facts[h].get("services"), dict)
                and not facts[h]["services"].get(service)]
        if down:
            hint = SERVICE_HINTS.get(service, "it is not running")
            out.append(f"{service} is needed but {hint} on {', '.join(down)}")
    return out
