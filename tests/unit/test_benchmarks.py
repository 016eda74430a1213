"""The built-in benchmarks follow the knobs they are meant to expose.

Each run happens in a throwaway network namespace (`unshare -n`) where the knob is set first,
so the per-namespace sysctls change nowhere else. Traffic stays on that namespace's loopback.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare (network namespaces)")


def bench_in_netns(sysctls, *args, timeout=60):
    """Run `node_agent bench ARGS` in a fresh namespace after writing SYSCTLS there."""
    setup = ["ip link set lo up"]
    setup += ["echo '%s' > /proc/sys/%s" % (v, k.replace(".", "/")) for k, v in sysctls.items()]
    # sh gets $0 = python, then the package folder, "bench" and the benchmark's arguments
    argv = ["unshare", "-n", "sh", "-c",
            " && ".join(setup) + ' && exec "$0" -I "$@"', PYTHON, str(ROOT / "node_agent"), "bench"]
    argv += [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, timeout=timeout)


def figure(out, name):
    match = re.search(r"^%s = ([0-9.]+)$" % name, out.decode(), re.M)
    assert match, out
    return float(match.group(1))


def test_accept_storm_steps_with_somaxconn():
    fast = bench_in_netns({"net.core.somaxconn": 4096}, "accept-storm", "--clients", 32, "--rounds", 3)
    slow = bench_in_netns({"net.core.somaxconn": 8}, "accept-storm", "--clients", 32)
    assert fast.returncode == 0 and slow.returncode == 0, fast.stderr + slow.stderr
    fast_ms, slow_ms = figure(fast.stdout, "elapsed_ms"), figure(slow.stdout, "elapsed_ms")
    # 32 SYNs at once into a queue of 9: the rest wait for a 1 s retransmit
    assert slow_ms >= 900, slow.stdout
    assert fast_ms < 200, fast.stdout
    assert slow_ms > 20 * fast_ms


def test_accept_storm_is_bounded_by_its_timeout():
    start = time.monotonic()
    result = bench_in_netns({"net.core.somaxconn": 8}, "accept-storm", "--clients", 64,
                            "--timeout", 0.3)
    assert time.monotonic() - start < 10
    assert result.returncode == 3
    assert 300 <= figure(result.stdout, "elapsed_ms") < 1000
    assert b"timed_out = 1" in result.stdout and b"accepted" in result.stdout


def test_stream_follows_tcp_rmem_and_wmem():
    small = "4096 4096 4096"
    slow = bench_in_netns({"net.ipv4.tcp_rmem": small, "net.ipv4.tcp_wmem": small},
                          "stream", "--mb", 8, "--rounds", 1)
    fast = bench_in_netns({}, "stream", "--mb", 8, "--rounds", 1)
    assert slow.returncode == 0 and fast.returncode == 0, slow.stderr + fast.stderr
    slow_mb, fast_mb = figure(slow.stdout, "throughput_mb_s"), figure(fast.stdout, "throughput_mb_s")
    assert fast_mb > 3 * slow_mb, (slow.stdout, fast.stdout)


def test_arguments_are_checked():
    assert bench_in_netns({}).returncode == 2
    assert bench_in_netns({}, "accept-storm", "--clients", 0).returncode == 2
    assert bench_in_netns({}, "stream", "--rounds", 0).returncode == 2


# -- the remote stream and its sink (in a namespace of the test's own, on its loopback) --------

def in_ns(netns, *args, **kw):
    return subprocess.run(["ip", "netns", "exec", netns, PYTHON, "-I", str(ROOT / "node_agent"), "bench"]
                          + [str(a) for a in args], capture_output=True, timeout=kw.get("timeout", 60))


@pytest.fixture()
def sink(netns):
    proc = subprocess.Popen(["ip", "netns", "exec", netns, PYTHON, "-I", str(ROOT / "node_agent"), "bench",
                             "sink", "--port", "5201", "--bind", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"listening = 127.0.0.1:5201\n", proc.stderr.read()
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def test_remote_stream_prints_mib_and_mbit_per_second(netns, sink):
    result = in_ns(netns, "stream", "--to", "127.0.0.1:5201", "--mb", 8, "--rounds", 2)
    assert result.returncode == 0, result.stderr
    mib, mbit = figure(result.stdout, "throughput_mb_s"), figure(result.stdout, "throughput_mbit_s")
    assert mib > 10 and abs(mbit - mib * 8.388608) < 0.01 * mbit, result.stdout
    assert len(re.search(rb"^rounds = (.*)  # MiB/s$", result.stdout, re.M).group(1).split()) == 2
    timed = in_ns(netns, "stream", "--to", "127.0.0.1:5201", "--seconds", 0.3, "--rounds", 1)
    assert timed.returncode == 0 and figure(timed.stdout, "throughput_mbit_s") > 0, timed.stderr
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(10) == 0  # the sink stops on SIGTERM, and cleanly


def test_remote_stream_past_its_timeout_is_censored_at_what_was_acknowledged(netns):
    """A receiver that never reads: the sender stalls once the windows are full."""
    stall = subprocess.Popen(["ip", "netns", "exec", netns, PYTHON, "-c",
                              "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 5202)); "
                              "s.listen(1); print('up', flush=True); c = s.accept()[0]; time.sleep(20)"],
                             stdout=subprocess.PIPE)
    try:
        assert stall.stdout.readline() == b"up\n"
        start = time.monotonic()
        result = in_ns(netns, "stream", "--to", "127.0.0.1:5202", "--mb", 512, "--timeout", 1)
        assert time.monotonic() - start < 10
        assert result.returncode == 3 and b"timed_out = 1" in result.stdout, result.stdout + result.stderr
        assert b"the receiver acknowledged" in result.stdout
        assert figure(result.stdout, "throughput_mb_s") < 100  # the windows' worth, not 512 MiB
    finally:
        stall.kill()
        stall.wait(10)
        stall.stdout.close()


def test_remote_arguments_are_checked(netns):
    for args in (["stream", "--to", "127.0.0.1"], ["stream", "--seconds", 1],
                 ["stream", "--to", "127.0.0.1:5201", "--mb", 1, "--seconds", 1], ["sink"]):
        assert in_ns(netns, *args).returncode == 2, args
    refused = in_ns(netns, "stream", "--to", "127.0.0.1:5999", "--mb", 1)
    assert refused.returncode == 1 and refused.stderr.decode().count("\n") == 1, refused.stderr
