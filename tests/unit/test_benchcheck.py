"""Benchmark commands: a known tool, no shell syntax, nothing destructive, installed on the hosts."""

import pytest

from controller.strategist.benchcheck import problems

GOOD = [
    "pgbench -h 127.0.0.1 -U postgres -C -c 8 -j 2 -T 10 pgbench",
    "/usr/bin/pgbench -c 8 -T 10 pgbench",
    "sysbench cpu --threads=2 --time=10 run",
    "ab -r -n 20000 -c 64 http://127.0.0.1/index.html?a=1&b=2",
    "wrk -t2 -c64 -d10s --latency http://127.0.0.1:8080/",
    "fio --name=rand --filename=/var/tmp/fio.dat --rw=randwrite --size=256M --runtime=10 --output-format=json",
    "tunefleet-bench accept-storm --clients 256",
    ["tunefleet-bench", "stream", "--mb", "64"],
]

BAD = [
    ("", "is empty"),
    ("pgbench -c 8 pgbench; reboot", "; (command chaining)"),
    ("pgbench -c 8 pgbench && echo ok", "&& / || (command chaining)"),
    ("pgbench -c 8 pgbench | tail -1", "| (a pipe)"),
    ("pgbench -c 8 `whoami`", "backticks"),
    ("pgbench -c 8 $(whoami)", "$( ) (command substitution)"),
    ("pgbench -c 8 ${DB}", "a $variable"),
    ("pgbench -c 8 pgbench > /tmp/out", "a redirection"),
    ("pgbench -c 8 pgbench 2>/dev/null", "a redirection"),
    ("pgbench -c 8 < /tmp/in", "a redirection"),
    ("stress-ng --cpu 2 &", "& (a background job)"),
    ("pgbench -c 8\nrm -rf /", "a newline"),
    ("rm -rf /", "runs `rm`, which is not a benchmark tool"),
    ("dd if=/dev/zero of=/dev/sda", "runs `dd`"),
    ("mkfs.ext4 /dev/sdb", "runs `mkfs.ext4`"),
    ("bash -c pgbench", "runs `bash`"),
    ("sudo pgbench -c 8", "runs `sudo`"),
    ("python3 -c 'import os'", "runs `python3`"),
    ("my-benchmark --fast", "not a known benchmark tool"),
    ("./pgbench -c 8", "by a relative path"),
    ("pgbench -i -s 50 pgbench", "pgbench -i drops and re-creates"),
    ("pgbench --initialize pgbench", "pgbench -i drops and re-creates"),
    ("sysbench oltp_read_write cleanup", "sysbench prepare/cleanup"),
    ("redis-benchmark -t set FLUSHALL", "FLUSHALL"),
    ("fio --name=x --rw=write --filename=/dev/nvme0n1", "block device"),
    ("fio --name=x --rw=randtrim --filename=/var/tmp/x", "fio trim"),
    ("tunefleet-bench", "needs a mode"),
    ("pgbench 'unterminated", "cannot be split"),
    (42, "must be a string"),
]


@pytest.mark.parametrize("cmd", GOOD)
def test_benchmark_invocations_pass(cmd):
    assert problems(cmd) == []


@pytest.mark.parametrize("cmd, expected", BAD)
def test_unsafe_or_unknown_commands_are_refused(cmd, expected):
    found = problems(cmd)
    assert found, cmd
    assert any(expected in p for p in found), found


def test_a_tool_missing_on_some_hosts():
    facts = {"a": {"tools": {"pgbench": "/usr/bin/pgbench"}}, "b": {"tools": {"pgbench": None}},
             "c": {"tools": {}}}  # c did not say: not counted as missing
    assert problems("pgbench -c 8 -T 10 pgbench", facts) == [
        "pgbench is not installed on b: choose a tool every host has (see inspect_hosts) or install it there"]
    assert problems("tunefleet-bench stream", facts) == []


def test_hand_written_specs_go_through_the_same_check():
    from controller.catalog import Catalog, validate
    from controller.errors import SpecError
    from controller.spec import TuningSpec

    spec = TuningSpec.from_dict({"workload_name": "x", "reward_metric": "elapsed_ms",
                                 "benchmark_command": "tunefleet-bench accept-storm; rm -rf /",
                                 "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096}]})
    with pytest.raises(SpecError, match="command chaining"):
        validate(spec, Catalog.default())
