"""The built-in benchmarks follow the knobs they are meant to expose.

Each run happens in a throwaway network namespace (`unshare -n`) where the knob is set first,
so the per-namespace sysctls change nowhere else. Traffic stays on that namespace's loopback.
"""

import os
import re
import shutil
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
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


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
