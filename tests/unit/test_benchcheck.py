"""Benchmark commands: a known tool, no shell syntax, nothing destructive, installed on the hosts."""

import pytest

from controller.benchcheck import problems

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
    from controller.catalog import Catalog
    from controller.errors import SpecError
    from controller.gate import validate
    from controller.spec import TuningSpec

    spec = TuningSpec.from_dict({"workload_name": "x", "reward_metric": "elapsed_ms",
                                 "benchmark_command": "tunefleet-bench accept-storm; rm -rf /",
                                 "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096}]})
    with pytest.raises(SpecError, match="command chaining"):
        validate(spec, Catalog.default())


# --- who wrote it: the user's own spec may name any program, strategists only known tools --------

USER_COMMANDS = [
    ("python3 loadtest.py --clients 64", None),
    ("./bench.sh", "/srv/bench"),
    ("k6 run script.js", None),
    ("/opt/hammerdb/hammerdbcli auto tpcc.tcl", None),
    (["ycsb", "run", "redis", "-P", "workloads/workloada"], None),
]


@pytest.mark.parametrize("cmd, cwd", USER_COMMANDS)
def test_a_users_spec_may_name_any_program(cmd, cwd):
    assert problems(cmd, origin="user", cwd=cwd) == []
    assert problems(cmd, origin="model", cwd=cwd), "a model may not propose the same command"


@pytest.mark.parametrize("cmd", ["python3 load.py | tail -1", "./bench.sh > out.txt", "k6 run a.js; k6 run b.js",
                                 "python3 x.py && echo ok", "python3 $(which x.py)", "python3 `x`",
                                 "python3 load.py $HOME/x", "python3 /srv/*.py", "python3 ~/load.py"])
def test_shell_syntax_is_refused_for_everyone_with_the_script_hint(cmd):
    for origin in ("user", "model", "builtin"):
        found = problems(cmd, origin=origin, cwd="/srv")
        assert any("put the commands in a script and name the script" in p for p in found), (origin, found)
    assert len(problems(cmd, origin="user", cwd="/srv")) == 1  # one line, whatever the mix


def test_a_relative_script_needs_its_folder():
    found = problems("./bench.sh", origin="user")
    assert found == ["benchmark_command runs `./bench.sh` by a relative path: set benchmark_cwd to the folder "
                     "it is relative to, or give an absolute path"]


def test_a_model_proposing_python_is_still_refused():
    assert any("runs `python3`, which is not a benchmark tool" in p for p in problems("python3 x.py"))
    assert any("not a known benchmark tool" in p for p in problems("k6 run script.js", origin="builtin"))


def test_the_users_catalog_widens_the_tools_a_model_may_use():
    assert problems("k6 run script.js", tools=("k6",)) == []
    assert problems("hey -n 100 http://127.0.0.1/", tools=("k6",)) != []
    # destructive flags stay refused even for a tool the user added
    assert problems("pgbench -i pgbench", tools=("k6",)) != []


def test_user_commands_are_recorded_with_their_argv_and_origin():
    from controller.benchcheck import record
    from controller.spec import TuningSpec

    spec = TuningSpec.from_dict({"workload_name": "x", "reward_metric": "rps", "reward_pattern": r"rps=(\d+)",
                                 "benchmark_command": "python3 'load test.py' --n 5", "benchmark_cwd": "/srv",
                                 "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096}]})
    assert record(spec, "user") == {"argv": ["python3", "load test.py", "--n", "5"], "cwd": "/srv", "shell": False,
                                    "origin": "user"}


def test_validate_trusts_the_users_program_and_says_one_line(tmp_path):
    from controller.catalog import Catalog
    from controller.errors import SpecError
    from controller.gate import validate
    from controller.spec import TuningSpec

    data = {"workload_name": "mine", "reward_metric": "rps", "reward_pattern": r"rps=(\d+)",
            "benchmark_command": "k6 run script.js",
            "action_space": [{"param": "net.ipv4.tcp_max_syn_backlog", "min": 16, "max": 4096}]}
    spec = TuningSpec.from_dict(data)
    validate(spec, Catalog.default(), origin="user")
    with pytest.raises(SpecError) as e:
        validate(spec, Catalog.default(), origin="model")
    assert "\n" not in str(e.value) and "not a known benchmark tool" in str(e.value)
    extra = tmp_path / "catalog.yml"
    extra.write_text("benchmark_tools: [k6, hey]\n")
    validate(spec, Catalog.load_extra(extra), origin="model")
    piped = TuningSpec.from_dict({**data, "benchmark_command": "k6 run script.js | grep rps"})
    with pytest.raises(SpecError, match="put the commands in a script"):
        validate(piped, Catalog.load_extra(extra), origin="user")


@pytest.mark.parametrize("text, expected", [
    ("benchmark_tools: k6\n", "must be a list of program names"),
    ("benchmark_tools: [/usr/bin/k6]\n", "without paths"),
    ("benchmark_tools: ['k6 run']\n", "must be a list of program names"),
])
def test_a_bad_benchmark_tools_entry_is_one_line(tmp_path, text, expected):
    from controller.catalog import Catalog
    from controller.errors import SpecError

    extra = tmp_path / "catalog.yml"
    extra.write_text(text)
    with pytest.raises(SpecError, match=expected):
        Catalog.load_extra(extra)


def test_benchmark_tools_beside_tunables(tmp_path):
    from controller.catalog import Catalog

    extra = tmp_path / "catalog.yml"
    extra.write_text("benchmark_tools: [hey]\ntunables:\n  net.core.somaxconn: {min: 128, max: 1024}\n")
    catalog = Catalog.load_extra(extra)
    assert catalog.benchmark_tools == ("hey",) and catalog.get("net.core.somaxconn").max == (1024,)


def test_a_plans_other_steps_may_only_drive_the_tools_own_servers():
    from controller.benchcheck import step_problems
    from controller.spec import TuningSpec

    base = {"workload_name": "x", "reward_metric": "tps", "benchmark_command": "pgbench -p 15432 pgbench",
            "action_space": [{"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 60}]}
    own = TuningSpec.from_dict({**base, "setup": ["tunefleet-service postgres setup --scale 5"],
                                "service": {"name": "postgres", "start": "tunefleet-service postgres start",
                                            "stop": "tunefleet-service postgres stop"},
                                "warmup": "pgbench -p 15432 -T 2 pgbench"})
    assert step_problems(own, origin="model") == []
    theirs = TuningSpec.from_dict({**base, "setup": ["pgbench -i -s 50 pgbench"],
                                   "service": {"name": "pg", "start": "systemctl start postgresql",
                                               "stop": "systemctl stop postgresql"}, "warmup": "rm -rf /var/lib"})
    found = step_problems(theirs, origin="model")
    assert any(p.startswith("setup[0] runs `pgbench`") for p in found)
    assert any(p.startswith("service.start runs `systemctl`") for p in found)
    assert any(p.startswith("warmup runs `rm`") for p in found)
    assert step_problems(theirs, origin="user") == []  # the user's own spec runs what the user wrote
    shell = TuningSpec.from_dict({**base, "reset": "psql -c 'truncate x' && vacuumdb"})
    assert step_problems(shell, origin="user")[0].startswith("reset `psql -c 'truncate x' && vacuumdb` contains")
