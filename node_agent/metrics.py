"""Host metrics from /proc: parsers as pure functions on text, snapshots, derived metrics.

A snapshot is what the parsers made of the /proc files at one moment; ``derive(a, b)`` turns two
snapshots into the metrics named in docs/protocol.md (rates and counts over the window between
them, gauges as of the later one). Network figures are those of the reader's network namespace.
Stdlib only, Python >= 3.7.
"""

import os
import time

# /proc/stat cpu columns, in kernel order (guest time is already counted in user/nice).
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
PSI = (("cpu", "some"), ("io", "some"), ("io", "full"), ("memory", "some"), ("memory", "full"))
# Network counters derive() reports: (metric, snapshot table, group, counter, per second?)
COUNTERS = (("tcp_retrans_per_s", "snmp", "Tcp", "RetransSegs", True),
            ("tcp_active_opens_per_s", "snmp", "Tcp", "ActiveOpens", True),
            ("tcp_passive_opens_per_s", "snmp", "Tcp", "PassiveOpens", True),
            ("tcp_listen_overflows", "netstat", "TcpExt", "ListenOverflows", False),
            ("tcp_listen_drops", "netstat", "TcpExt", "ListenDrops", False),
            ("tcp_backlog_drops", "netstat", "TcpExt", "TCPBacklogDrop", False))
MEMINFO = ("MemTotal", "MemAvailable")
GAUGES = ("procs_running", "load1", "mem_used_pct", "mem_available_mb",
          "psi_cpu_some", "psi_io_some", "psi_io_full", "psi_mem_some", "psi_mem_full")


def parse_stat(text):
    """/proc/stat -> {"cpu": {field: jiffies}, "ctxt": n, "procs_running": n, "procs_blocked": n}"""
    out: dict = {}
    for line in text.splitlines():
        if not line.startswith(("cpu ", "ctxt", "procs_")):  # skips the intr line: thousands of numbers on a big host
            continue
        words = line.split()
        if words[0] == "cpu":
            values = [int(w) for w in words[1:1 + len(CPU_FIELDS)]]
            values += [0] * (len(CPU_FIELDS) - len(values))
            out["cpu"] = dict(zip(CPU_FIELDS, values))
        elif words[0] in ("ctxt", "procs_running", "procs_blocked") and len(words) > 1:
            out[words[0]] = int(words[1])
    return out


def parse_meminfo(text, keys=None):
    """/proc/meminfo -> {"MemTotal": kB, ...}; with ``keys``, only those."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        key = key.strip()
        if keys is not None and key not in keys:
            continue
        words = rest.split()
        if words and words[0].isdigit():
            out[key] = int(words[0])
            if keys is not None and len(out) == len(keys):
                break  # both come first: the fifty lines after them are not read
    return out


def parse_loadavg(text):
    """/proc/loadavg -> {"load1", "load5", "load15", "runnable", "threads"}"""
    words = text.split()
    runnable, _, threads = words[3].partition("/")
    return {"load1": float(words[0]), "load5": float(words[1]), "load15": float(words[2]),
            "runnable": int(runnable), "threads": int(threads)}


def parse_pressure(text):
    """/proc/pressure/<resource> -> {"some": {"avg10", "avg60", "avg300", "total"}, "full": ...}"""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if words:
            out[words[0]] = dict((k, float(v)) for k, _, v in
                                 (w.partition("=") for w in words[1:]))
    return out


def parse_counter_table(text, keys=None):
    """/proc/net/snmp and /proc/net/netstat (a header line then a value line per group)
    -> {"Tcp": {"ActiveOpens": n, ...}, "TcpExt": {...}, ...}; with ``keys`` ({group: names}) only
    those (a snapshot parses only what ``derive`` reads: netstat has a few hundred counters)."""
    out = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for header, values in zip(lines[0::2], lines[1::2]):
        group = header[0].rstrip(":")
        if values[0].rstrip(":") != group or (keys is not None and group not in keys):
            continue
        if keys is None:
            out[group] = dict((k, int(v)) for k, v in zip(header[1:], values[1:]))
        else:
            out[group] = dict((k, int(values[header.index(k)])) for k in keys[group] if k in header)
    return out


def parse_net_dev(text):
    """/proc/net/dev -> {interface: {"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"}}"""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        words = rest.split()
        if len(words) >= 10:
            out[name.strip()] = {"rx_bytes": int(words[0]), "rx_packets": int(words[1]),
                                 "tx_bytes": int(words[8]), "tx_packets": int(words[9])}
    return out


def parse_listen_ports(text):
    """/proc/net/tcp or tcp6 -> set of local ports in LISTEN state (st 0A)."""
    ports = set()
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) > 3 and words[3] == "0A":
            ports.add(int(words[1].rpartition(":")[2], 16))
    return ports


def _read(root, name):
    try:  # raw bytes, decoded here: a text file object costs more syscalls than the read itself
        with open(os.path.join(root, name), "rb", buffering=0) as f:
            return f.readall().decode("ascii", "replace")
    except OSError:
        return None


class _Proc:
    """Reads /proc files through descriptors kept open: a read at offset 0 makes the kernel
    generate the file afresh, so a snapshot costs one system call per file, not three (open, read,
    close). Twice per evaluation and once a second while a benchmark runs, that adds up."""

    def __init__(self, root):
        self.root = root
        self.fds = {}    # name -> descriptor (not inherited by the benchmark: Python's default)
        self.size = {}   # name -> bytes to ask for, grown when a file is longer

    def read(self, name):
        fd = self.fds.get(name)
        try:
            if fd is None:
                fd = self.fds[name] = os.open(os.path.join(self.root, name), os.O_RDONLY)
            size = self.size.get(name, 8192)
            data = os.pread(fd, size, 0)
            while len(data) >= size:  # /proc/stat on a big host: thousands of interrupt counts
                size *= 4
                data = os.pread(fd, size, 0)
            self.size[name] = size
            return data.decode("ascii", "replace")
        except OSError:
            if self.fds.get(name) is not None:
                os.close(self.fds.pop(name))
            return None


_PROC = _Proc("/proc")  # the agent's own /proc; other roots (test fixtures) are opened at each read


def _table_parser(table):
    keys: dict = {}
    for _, t, group, key, _ in COUNTERS:
        if t == table:
            keys.setdefault(group, []).append(key)
    return lambda text: parse_counter_table(text, keys)


_TABLES = dict((table, _table_parser(table)) for table in ("snmp", "netstat"))
_MEMINFO = lambda text: parse_meminfo(text, MEMINFO)  # noqa: E731


def snapshot(root="/proc"):
    """Parse every source once; a missing source (no /proc/pressure) is left out."""
    snap = {"time": time.time(), "mono": time.monotonic()}
    sources = [("stat", "stat", parse_stat), ("meminfo", "meminfo", _MEMINFO),
               ("loadavg", "loadavg", parse_loadavg), ("snmp", "net/snmp", _TABLES["snmp"]),
               ("netstat", "net/netstat", _TABLES["netstat"]), ("dev", "net/dev", parse_net_dev)]
    sources += [("psi_" + r, "pressure/" + r, parse_pressure) for r in ("cpu", "io", "memory")]
    for key, name, parse in sources:
        text = _PROC.read(name) if root == _PROC.root else _read(root, name)
        if text is not None:
            try:
                snap[key] = parse(text)
            except (ValueError, IndexError):
                pass
    return snap


def _delta(a, b):
    """Counter increase, 0 when the counter went backwards (wrap or reset)."""
    return max(0, b - a)


def _counter(snap, table, group, key):
    return snap.get(table, {}).get(group, {}).get(key)


def derive(a, b):
    """Metrics over the window from snapshot ``a`` to the later snapshot ``b``.

    cpu_* are left out when no clock tick passed between them (a window under ~10 ms)."""
    out = {}
    dt = max(b["mono"] - a["mono"], 1e-6)
    if "stat" in a and "stat" in b:
        ca, cb = a["stat"].get("cpu"), b["stat"].get("cpu")
        if ca and cb:
            d = dict((f, _delta(ca[f], cb[f])) for f in CPU_FIELDS)
            total = float(sum(d.values()))
            if total > 0:
                out["cpu_util"] = 100.0 * (total - d["idle"] - d["iowait"]) / total
                out["cpu_user"] = 100.0 * (d["user"] + d["nice"]) / total
                out["cpu_system"] = 100.0 * (d["system"] + d["irq"] + d["softirq"]) / total
                out["cpu_iowait"] = 100.0 * d["iowait"] / total
                out["cpu_steal"] = 100.0 * d["steal"] / total
        if "ctxt" in a["stat"] and "ctxt" in b["stat"]:
            out["ctxt_per_s"] = _delta(a["stat"]["ctxt"], b["stat"]["ctxt"]) / dt
    out.update(gauges(b))
    for metric, table, group, key, per_s in COUNTERS:
        va, vb = _counter(a, table, group, key), _counter(b, table, group, key)
        if va is not None and vb is not None:
            out[metric] = _delta(va, vb) / dt if per_s else float(_delta(va, vb))
    if "dev" in a and "dev" in b:
        for metric, key in (("net_rx_mb_per_s", "rx_bytes"), ("net_tx_mb_per_s", "tx_bytes")):
            moved = sum(_delta(a["dev"][i][key], b["dev"][i][key]) for i in b["dev"] if i in a["dev"])
            out[metric] = moved / 1e6 / dt
    return out


def gauges(snap):
    """Instantaneous metrics of one snapshot."""
    out = {}
    if "procs_running" in snap.get("stat", {}):
        out["procs_running"] = float(snap["stat"]["procs_running"])
    if "loadavg" in snap:
        out["load1"] = snap["loadavg"]["load1"]
    mem = snap.get("meminfo", {})
    if mem.get("MemTotal") and "MemAvailable" in mem:
        out["mem_used_pct"] = 100.0 * (mem["MemTotal"] - mem["MemAvailable"]) / mem["MemTotal"]
        out["mem_available_mb"] = mem["MemAvailable"] / 1024.0
    for resource, kind in PSI:
        value = snap.get("psi_" + resource, {}).get(kind, {}).get("avg10")
        if value is not None:
            out["psi_%s_%s" % ("mem" if resource == "memory" else resource, kind)] = value
    return out


def summarize(snaps):
    """Metrics over a run seen as snapshots [start, ..., end]: counters from the first and the
    last, gauges averaged over all of them."""
    out = derive(snaps[0], snaps[-1])
    seen = [gauges(s) for s in snaps]
    for name in GAUGES:
        values = [g[name] for g in seen if name in g]
        if values:
            out[name] = sum(values) / len(values)
    return out


class Sampler:
    """Metrics since the previous call (the first call: since the Sampler was made)."""

    def __init__(self, root="/proc"):
        self.root = root
        self.last = snapshot(root)

    def sample(self):
        now = snapshot(self.root)
        metrics = derive(self.last, now)
        self.last = now
        return {"time": now["time"], "metrics": metrics}
