"""The /proc parsers and the derived metrics, on files captured from a real host.

tests/fixtures/proc/t0 and t1 were copied from /proc 1.2 s apart inside a network namespace,
with a 10 MiB loopback transfer, an accept storm against a listener with a 2-deep queue, a busy
loop and listeners on port 5432 (IPv4 and IPv6) in between.
"""

import time
from pathlib import Path

import pytest

from node_agent import metrics

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "proc"


def text(moment, name):
    return (FIXTURES / moment / name).read_text()


def fixture_snapshot(moment, mono):
    snap = metrics.snapshot(str(FIXTURES / moment))
    snap["mono"] = mono
    return snap


def test_parse_stat():
    stat = metrics.parse_stat(text("t0", "stat"))
    assert stat["cpu"] == {"user": 35802, "nice": 0, "system": 2196, "idle": 148021,
                           "iowait": 924, "irq": 0, "softirq": 117, "steal": 26}
    assert stat["ctxt"] == 326676
    assert stat["procs_running"] == 3
    assert "procs_blocked" in stat


def test_parse_stat_of_an_old_kernel_without_steal():
    stat = metrics.parse_stat("cpu  10 1 5 100 2 0 0\nctxt 7\n")
    assert stat["cpu"]["steal"] == 0 and stat["cpu"]["idle"] == 100 and stat["ctxt"] == 7


def test_parse_meminfo():
    mem = metrics.parse_meminfo(text("t0", "meminfo"))
    assert mem["MemTotal"] == 24684096
    assert mem["MemAvailable"] == 23203880
    assert all(isinstance(v, int) for v in mem.values())


def test_parse_loadavg():
    assert metrics.parse_loadavg(text("t0", "loadavg")) == {
        "load1": 1.41, "load5": 0.81, "load15": 0.36, "runnable": 3, "threads": 100}


def test_parse_pressure():
    psi = metrics.parse_pressure(text("t1", "pressure/cpu"))
    assert psi["some"]["avg10"] == 8.23
    assert psi["some"]["total"] == 8389177
    assert psi["full"]["avg60"] == 0.0


def test_parse_snmp_and_netstat():
    snmp = metrics.parse_counter_table(text("t1", "net/snmp"))
    assert snmp["Tcp"]["ActiveOpens"] == 21
    assert snmp["Tcp"]["PassiveOpens"] == 4
    assert snmp["Tcp"]["MaxConn"] == -1
    assert "Udp" in snmp and "Ip" in snmp
    netstat = metrics.parse_counter_table(text("t1", "net/netstat"))
    assert netstat["TcpExt"]["ListenOverflows"] == 17
    assert netstat["TcpExt"]["ListenDrops"] == 17
    assert "IpExt" in netstat


def test_a_snapshot_parses_just_the_counters_derive_reads_with_the_same_values():
    """netstat has a few hundred counters: a snapshot keeps the ones in metrics.COUNTERS and MEMINFO."""
    for name, table in (("net/snmp", "snmp"), ("net/netstat", "netstat")):
        full, kept = metrics.parse_counter_table(text("t1", name)), metrics._TABLES[table](text("t1", name))
        wanted = {(g, k) for _, t, g, k, _ in metrics.COUNTERS if t == table}
        assert {(g, k) for g in kept for k in kept[g]} == wanted
        assert all(kept[g][k] == full[g][k] for g, k in wanted)
    mem = metrics._MEMINFO(text("t0", "meminfo"))
    assert mem == {k: metrics.parse_meminfo(text("t0", "meminfo"))[k] for k in metrics.MEMINFO}


def test_parse_net_dev():
    dev = metrics.parse_net_dev(text("t1", "net/dev"))
    assert dev == {"lo": {"rx_bytes": 10501716, "rx_packets": 303,
                          "tx_bytes": 10501716, "tx_packets": 303}}


def test_parse_listen_ports():
    assert metrics.parse_listen_ports(text("t0", "net/tcp")) == {5432}
    assert metrics.parse_listen_ports(text("t0", "net/tcp6")) == {5432}
    header = text("t0", "net/tcp").splitlines()[0]
    assert metrics.parse_listen_ports(header + "\n") == set()


def test_derived_metrics_over_the_window():
    m = metrics.derive(fixture_snapshot("t0", 100.0), fixture_snapshot("t1", 101.2))
    # cpu jiffies: user +229, system +15, steal +1, idle +0 -> 245 in all
    assert m["cpu_util"] == pytest.approx(100.0)
    assert m["cpu_user"] == pytest.approx(100.0 * 229 / 245)
    assert m["cpu_system"] == pytest.approx(100.0 * 15 / 245)
    assert m["cpu_steal"] == pytest.approx(100.0 * 1 / 245)
    assert m["cpu_iowait"] == 0.0
    assert m["ctxt_per_s"] == pytest.approx((327471 - 326676) / 1.2)
    assert m["procs_running"] == 3.0
    assert m["load1"] == 1.41
    assert m["mem_used_pct"] == pytest.approx(100.0 * (24684096 - 23200360) / 24684096)
    assert m["mem_available_mb"] == pytest.approx(23200360 / 1024.0)
    assert m["psi_cpu_some"] == 8.23
    assert m["psi_io_some"] == 0.02 and m["psi_io_full"] == 0.02
    assert m["psi_mem_some"] == 0.0 and m["psi_mem_full"] == 0.0
    assert m["tcp_active_opens_per_s"] == pytest.approx(21 / 1.2)
    assert m["tcp_passive_opens_per_s"] == pytest.approx(4 / 1.2)
    assert m["tcp_retrans_per_s"] == 0.0
    assert m["tcp_listen_overflows"] == 17.0
    assert m["tcp_listen_drops"] == 17.0
    assert m["net_rx_mb_per_s"] == pytest.approx(10501716 / 1e6 / 1.2)
    assert m["net_tx_mb_per_s"] == pytest.approx(10501716 / 1e6 / 1.2)


def test_every_documented_metric_is_derived_from_a_full_proc():
    documented = {"cpu_util", "cpu_user", "cpu_system", "cpu_iowait", "cpu_steal", "ctxt_per_s",
                  "procs_running", "load1", "mem_used_pct", "mem_available_mb", "psi_cpu_some",
                  "psi_io_some", "psi_io_full", "psi_mem_some", "psi_mem_full",
                  "tcp_retrans_per_s", "tcp_active_opens_per_s", "tcp_passive_opens_per_s",
                  "tcp_listen_overflows", "tcp_listen_drops", "tcp_backlog_drops", "net_rx_mb_per_s",
                  "net_tx_mb_per_s"}
    m = metrics.derive(fixture_snapshot("t0", 0.0), fixture_snapshot("t1", 1.0))
    assert set(m) == documented


def test_a_window_under_one_tick_has_no_cpu_figures():
    a, b = fixture_snapshot("t0", 0.0), fixture_snapshot("t0", 0.004)
    m = metrics.derive(a, b)
    assert not [k for k in m if k.startswith("cpu_")]
    assert m["tcp_listen_overflows"] == 0.0 and m["load1"] == 1.41


def test_counters_that_go_backwards_count_as_zero():
    m = metrics.derive(fixture_snapshot("t1", 0.0), fixture_snapshot("t0", 1.0))
    assert m["tcp_listen_overflows"] == 0.0
    assert m["net_rx_mb_per_s"] == 0.0
    assert m["ctxt_per_s"] == 0.0
    assert "cpu_util" not in m  # no tick counted forward


def test_a_host_without_pressure_files_omits_psi(tmp_path):
    for name in ("stat", "meminfo", "loadavg", "net/snmp", "net/netstat", "net/dev"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text("t0", name))
    a = metrics.snapshot(str(tmp_path))
    b = dict(a, mono=a["mono"] + 1.0)
    m = metrics.derive(a, b)
    assert not [k for k in m if k.startswith("psi_")]
    assert m["mem_available_mb"] > 0


def test_summary_averages_gauges_and_takes_rates_end_to_end():
    start, end = fixture_snapshot("t0", 0.0), fixture_snapshot("t1", 2.0)
    middle = dict(fixture_snapshot("t1", 1.0), loadavg=dict(start["loadavg"], load1=4.0))
    s = metrics.summarize([start, middle, end])
    assert s["load1"] == pytest.approx((1.41 + 4.0 + 1.41) / 3)
    assert s["tcp_active_opens_per_s"] == pytest.approx(21 / 2.0)
    assert s["tcp_listen_overflows"] == 17.0


def test_sampler_on_the_live_host():
    sampler = metrics.Sampler()
    first = sampler.sample()
    second = sampler.sample()
    assert second["time"] >= first["time"]
    assert second["metrics"]["mem_available_mb"] > 0
    assert second["metrics"]["tcp_listen_overflows"] >= 0


def test_a_kept_descriptor_reads_the_live_proc_afresh():
    """Snapshots of /proc re-read descriptors kept open: each read must see the counters move
    (a descriptor left at its end would read nothing, and the figures would vanish)."""
    first = metrics.snapshot()
    time.sleep(0.02)  # sleeping is itself a context switch
    second = metrics.snapshot()
    assert second["stat"]["ctxt"] > first["stat"]["ctxt"]
    assert set(second) == set(first) and {"stat", "meminfo", "snmp", "netstat"} <= set(second)


def test_a_kept_descriptor_reads_a_file_longer_than_its_buffer_whole(tmp_path):
    """/proc/stat on a big host lists thousands of interrupt counts: the reader grows its buffer."""
    path = tmp_path / "stat"
    lines = ["cpu  1 2 3 4 5 6 7 8", "intr " + " ".join(["12345"] * 20000), "ctxt 99", "procs_running 3"]
    path.write_text("\n".join(lines) + "\n")
    proc = metrics._Proc(str(tmp_path))
    assert metrics.parse_stat(proc.read("stat"))["ctxt"] == 99
    with open(path, "r+") as f:  # rewritten in place, as the kernel regenerates /proc/stat
        f.write(f.read().replace("ctxt 99", "ctxt 77"))
    assert metrics.parse_stat(proc.read("stat"))["ctxt"] == 77
    assert proc.read("missing") is None
