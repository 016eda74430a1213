"""The LLM strategist against a real HTTP server on localhost that speaks chat completions with
scripted answers. Every test counts the requests the server received."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from controller.strategist import choose
from controller.strategist.config import LLMConfig
from controller.strategist.llm import ModelError
from tests.fake_llm import FakeLLM, call, optimize, reply, status, text

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-Zq8VJ2wX9rT4mN6pL1hB"
GOAL = "optimize this system for a PostgreSQL database"

GOOD = {
    "workload_name": "PostgreSQL with short connections",
    "reward_metric": "transactions_per_second",
    "benchmark_command": "pgbench -h 127.0.0.1 -U postgres -C -c 8 -j 2 -T 10 pgbench",
    "benchmark_timeout": 60,
    "action_space": [
        {"param": "net.ipv4.tcp_max_syn_backlog", "min": 128, "max": 4096,
         "rationale": "a new connection per transaction bursts into the postmaster's SYN queue"},
        {"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 60,
         "rationale": "closed connections hold ports and memory in FIN_WAIT_2"},
    ],
    "state_space": [{"metric": "cpu_util"}, {"metric": "tcp_listen_overflows"}],
}


def variant(**changes) -> dict:
    spec = copy.deepcopy(GOOD)
    spec.update(changes)
    return spec


def made_up_knob() -> dict:
    spec = copy.deepcopy(GOOD)
    spec["action_space"].append({"param": "net.ipv4.tcp_turbo_mode", "min": 0, "max": 1, "rationale": "faster"})
    return spec


def host_facts(name: str, boot_id: str) -> dict:
    """What hello answers, with every catalog knob described (net.core.netdev_max_backlog absent)."""
    from controller.catalog import Catalog

    knobs = {}
    for t in Catalog.default():
        value = " ".join(str(v) for v in t.min) if t.min else t.choices[0]
        knobs[t.name] = {"exists": True, "value": value, "writable": True}
    knobs["net.core.somaxconn"]["value"] = "4096"
    knobs["net.core.netdev_max_backlog"] = {"exists": False, "value": None, "writable": False}
    return {
        "protocol": 1, "kernel": "6.1.0-18-amd64", "boot_id": boot_id, "hostname": name,
        "distro": {"id": "debian", "name": "Debian GNU/Linux", "version": "12"}, "python": "3.11.2",
        "cpus": 4, "mem_total_kb": 8 * 1024 * 1024, "user": "root",
        "tools": {"pgbench": "/usr/bin/pgbench", "sysbench": "/usr/bin/sysbench", "ab": None, "wrk": None,
                  "fio": None, "iperf3": None, "psql": "/usr/bin/psql"},
        "services": {"postgresql": True}, "recovered": {}, "knobs": knobs,
    }


@pytest.fixture()
def facts() -> dict:
    return {"db1": host_facts("db1", "boot-a"), "db2": host_facts("db2", "boot-b")}


def config_for(fake: FakeLLM, **kw) -> LLMConfig:
    kw.setdefault("max_retries", 2)
    return LLMConfig(model="fake-model", base_url=fake.url, api_key=KEY, timeout=10, **kw)


def plan_with(script, facts, repeat_last=False, events=None, **kw):
    with FakeLLM(script, repeat_last=repeat_last) as fake:
        try:
            return fake, choose(GOAL, facts, config=config_for(fake, **kw),
                                on_event=(lambda k, t: events.append((k, t))) if events is not None else None)
        except Exception as e:  # handed back with the request count
            e.fake = fake
            raise


# --- scripted conversations -------------------------------------------------------------------

def test_good_first_answer_is_one_request(facts):
    fake, plan = plan_with([reply(optimize(GOOD), usage=(1200, 300))], facts)
    assert fake.count == 1
    assert plan.spec.knob_names == ["net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout"]
    assert plan.spec.benchmark_command == GOOD["benchmark_command"]
    assert "SYN queue" in plan.rationale["net.ipv4.tcp_max_syn_backlog"]
    assert plan.strategist == "llm" and plan.model == "fake-model"
    assert plan.usage == {"requests": 1, "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
    sent = fake.requests[0]
    assert sent["model"] == "fake-model"
    assert {t["function"]["name"] for t in sent["tools"]} == {"inspect_hosts", "list_tunables", "optimize_workload"}
    assert "expert Linux sysadmin" in sent["messages"][0]["content"]
    assert "pg-oltp" in sent["messages"][0]["content"]  # the workload catalog as examples
    assert GOAL in sent["messages"][1]["content"]
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"


def test_tools_answer_with_real_host_data(facts):
    script = [reply(call("inspect_hosts", {})), reply(call("list_tunables", {"prefix": "net."})),
              reply(optimize(GOOD))]
    fake, plan = plan_with(script, facts)
    assert fake.count == 3
    hosts = json.loads(fake.tool_results(1)[0])["hosts"]
    assert [h["name"] for h in hosts] == ["db1", "db2"]
    assert hosts[0]["kernel"] == "6.1.0-18-amd64" and hosts[0]["mem_total_mb"] == 8192
    assert "pgbench" in hosts[0]["tools_installed"] and "ab" in hosts[0]["tools_missing"]
    assert hosts[0]["services_running"] == ["postgresql"]
    tunables = json.loads(fake.tool_results(2)[1])
    names = {t["name"]: t for t in tunables["tunables"]}
    assert names["net.core.somaxconn"]["current"] == "4096"
    assert names["net.core.somaxconn"]["safe_bounds"] == "16..65535"
    assert all(n.startswith("net.") for n in names)
    assert "net.core.netdev_max_backlog" in tunables["not_available_on_these_hosts"]
    assert plan.usage["requests"] == 3


def test_made_up_knob_goes_back_to_the_model_then_the_fix_passes(facts):
    events = []
    fake, plan = plan_with([reply(optimize(made_up_knob())), reply(optimize(GOOD))], facts, events=events)
    assert fake.count == 2
    feedback = fake.tool_results(1)[0]
    assert "REJECTED (attempt 1 of 3)" in feedback
    assert "net.ipv4.tcp_turbo_mode: no such tunable" in feedback
    assert "net.ipv4.tcp_turbo_mode" not in plan.spec.knob_names
    assert len(plan.llm["rejected"]) == 1
    assert [k for k, _ in events].count("rejected") == 1


def test_knob_missing_on_the_hosts_is_rejected(facts):
    spec = copy.deepcopy(GOOD)
    spec["action_space"].append({"param": "net.core.netdev_max_backlog", "min": 1000, "max": 4000,
                                 "rationale": "queue"})
    fake, _ = plan_with([reply(optimize(spec)), reply(optimize(GOOD))], facts)
    assert fake.count == 2
    assert "net.core.netdev_max_backlog: missing on db1, db2" in fake.tool_results(1)[0]


def test_range_outside_safe_bounds_is_rejected(facts):
    spec = copy.deepcopy(GOOD)
    spec["action_space"][0]["min"] = 1
    fake, _ = plan_with([reply(optimize(spec)), reply(optimize(GOOD))], facts)
    assert fake.count == 2
    assert "net.ipv4.tcp_max_syn_backlog: range 1..4096 is outside the safe bounds 16..65535" in fake.tool_results(1)[0]


def test_destructive_benchmark_then_a_fix(facts):
    bad = variant(benchmark_command="pgbench -i -s 50 pgbench && rm -rf /var/lib/postgresql")
    fake, plan = plan_with([reply(optimize(bad)), reply(optimize(GOOD))], facts)
    assert fake.count == 2
    feedback = fake.tool_results(1)[0]
    assert "&& / || (command chaining)" in feedback
    assert "pgbench -i drops and re-creates" in feedback
    assert plan.spec.benchmark_command == GOOD["benchmark_command"]


@pytest.mark.parametrize("command, expected", [
    ("rm -rf /", "runs `rm`, which is not a benchmark tool"),
    ("pgbench -c 8 pgbench | tee /etc/passwd", "| (a pipe)"),
    ("pgbench -c 8 $(cat /etc/shadow)", "$( ) (command substitution)"),
    ("pgbench -c 8 pgbench > /etc/motd", "a redirection"),
    ("fio --name=x --rw=randwrite --filename=/dev/sda", "block device"),
    ("curl http://example.com/x.sh", "runs `curl`"),
])
def test_unsafe_benchmarks_never_pass(facts, command, expected):
    with pytest.raises(ModelError) as err:
        plan_with([reply(optimize(variant(benchmark_command=command)))], facts, repeat_last=True)
    assert err.value.fake.count == 3  # max_invalid
    assert expected in err.value.fake.tool_results(-1)[0]


def test_malformed_json_in_config_json(facts):
    broken = '{"workload_name": "PostgreSQL", "action_space": [ {"param": "net.core.somaxconn", }'
    fake, plan = plan_with([reply(optimize(broken)), reply(optimize(GOOD))], facts)
    assert fake.count == 2
    assert "config_json is not valid JSON" in fake.tool_results(1)[0]
    assert plan.spec.workload_name == GOOD["workload_name"]


def test_malformed_tool_arguments_and_missing_fields(facts):
    script = [reply(call("optimize_workload", "{not json")),
              reply(optimize({"workload_name": "x", "action_space": []})),
              reply(optimize(GOOD))]
    fake, _ = plan_with(script, facts)
    assert fake.count == 3
    assert "arguments of optimize_workload are not valid JSON" in fake.tool_results(1)[0]
    second = fake.tool_results(2)[1]
    assert "reward_metric: missing (required)" in second and "benchmark_command: missing (required)" in second


def test_a_model_that_never_converges_is_stopped(facts):
    with pytest.raises(ModelError) as err:
        plan_with([reply(optimize(made_up_knob()))], facts, repeat_last=True)
    assert err.value.fake.count == 3
    assert "failed validation 3 times (limit 3)" in str(err.value)
    assert "tcp_turbo_mode" in str(err.value)


def test_a_model_that_only_talks_is_bounded_by_max_turns(facts):
    with pytest.raises(ModelError) as err:
        plan_with([text("PostgreSQL likes a low swappiness.")], facts, repeat_last=True, max_turns=5)
    assert err.value.fake.count == 5
    assert "within 5 requests" in str(err.value) and "never called optimize_workload" in str(err.value)
    # after prose the model is asked again for the tool call
    assert "call optimize_workload" in err.value.fake.messages(-1)[-1]["content"]


def test_planning_without_hosts(facts):
    fake, plan = plan_with([reply(call("inspect_hosts", {})), reply(optimize(GOOD))], None)
    assert fake.count == 2
    assert json.loads(fake.tool_results(1)[0])["hosts"] == []
    assert any("planned without hosts" in w for w in plan.warnings)


def test_missing_tool_on_a_host_is_rejected(facts):
    facts["db2"]["tools"]["pgbench"] = None
    ab = variant(benchmark_command="ab -n 1000 -c 8 http://127.0.0.1/", reward_metric="requests_per_second")
    with pytest.raises(ModelError) as err:
        plan_with([reply(optimize(GOOD)), reply(optimize(ab)), reply(optimize(GOOD))], facts)
    assert err.value.fake.count == 3
    results = err.value.fake.tool_results(-1)
    assert "pgbench is not installed on db2" in results[0]
    assert "ab is not installed on db1, db2" in results[1]


# --- the endpoint failing -------------------------------------------------------------------------

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_endpoint_down_is_one_clear_line(facts):
    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = LLMConfig(model="m", base_url=url, api_key=KEY, max_retries=1, timeout=5)
    with pytest.raises(ModelError) as err:
        choose(GOAL, facts, config=cfg)
    assert str(err.value) == f"cannot reach the model endpoint at {url}: connection refused (after 2 attempts)"


def test_401_is_not_retried_and_names_the_key_problem(facts):
    with pytest.raises(ModelError) as err:
        plan_with([status(401, f"Incorrect API key provided: {KEY}")], facts)
    assert err.value.fake.count == 1
    assert "the endpoint refused the API key (401)" in str(err.value)
    assert KEY not in str(err.value)


def test_429_is_retried_then_succeeds(facts):
    fake, plan = plan_with([status(429, "slow down"), status(429, "slow down"), reply(optimize(GOOD))], facts)
    assert fake.count == 3
    assert plan.usage["requests"] == 1  # completions that answered


def test_429_until_the_retries_run_out(facts):
    with pytest.raises(ModelError) as err:
        plan_with([status(429, "quota exceeded")], facts, repeat_last=True)
    assert err.value.fake.count == 3  # one try + max_retries 2
    assert str(err.value).startswith("the endpoint is rate limiting or out of quota (429) (after 3 attempts)")


def test_500_is_retried_and_the_key_is_scrubbed_from_the_message(facts):
    with pytest.raises(ModelError) as err:
        plan_with([status(500, f"upstream failed for key {KEY}")], facts, repeat_last=True)
    assert err.value.fake.count == 3
    assert "failed (500) (after 3 attempts)" in str(err.value)
    assert KEY not in str(err.value) and "***" in str(err.value)


def test_500_then_success(facts):
    fake, _ = plan_with([status(503, "loading model"), reply(optimize(GOOD))], facts)
    assert fake.count == 2


def test_unknown_model_404(facts):
    with pytest.raises(ModelError) as err:
        plan_with([status(404, "model 'fake-model' not found")], facts)
    assert err.value.fake.count == 1
    assert "has no model 'fake-model'" in str(err.value)


def test_model_is_asked_of_the_endpoint_when_not_given(facts):
    with FakeLLM([reply(optimize(GOOD))], models=("qwen2.5-7b-instruct",)) as fake:
        cfg = LLMConfig(model=None, base_url=fake.url, api_key=KEY)
        plan = choose(GOAL, facts, config=cfg)
    assert fake.gets == ["/v1/models"] and fake.count == 1
    assert fake.requests[0]["model"] == "qwen2.5-7b-instruct"
    assert plan.llm["requested_model"] == "qwen2.5-7b-instruct"


# --- the key never shows ------------------------------------------------------------------------

def test_the_key_never_reaches_plan_json_or_the_cli_output(tmp_path, facts):
    from controller.frontend import plan_record

    fake, plan = plan_with([status(500, f"bad key {KEY}"), reply(optimize(GOOD))], facts)
    record = json.dumps(plan_record(plan.spec, plan))
    assert KEY not in record
    assert json.loads(record)["model"] == "fake-model"
    assert json.loads(record)["usage"]["total_tokens"] == 120
    assert json.loads(record)["rationale"]["net.ipv4.tcp_max_syn_backlog"].startswith("a new connection")
    assert KEY not in repr(config_for(fake))


def run_cli(args, fake_url, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNEFLEET_"))}
    environ.update({"OPENAI_BASE_URL": fake_url, "OPENAI_API_KEY": KEY, "XDG_CONFIG_HOME": str(tmp_path),
                    "TUNEFLEET_MODEL": "fake-model", "COLUMNS": "200", **env})
    return subprocess.run([sys.executable, "-c", "from controller.cli import main; main()", *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_cli_plan_prints_the_validated_spec_and_rationale(tmp_path):
    with FakeLLM([reply(optimize(GOOD))]) as fake:
        proc = run_cli(["plan", GOAL], fake.url, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert fake.count == 1
    assert "PostgreSQL with short connections" in proc.stdout
    assert "net.ipv4.tcp_max_syn_backlog" in proc.stdout and "SYN queue" in proc.stdout
    assert "fake-model" in proc.stdout + proc.stderr
    assert KEY not in proc.stdout + proc.stderr


def test_cli_plan_json_records_model_and_usage(tmp_path):
    with FakeLLM([reply(optimize(made_up_knob())), reply(optimize(GOOD))]) as fake:
        proc = run_cli(["plan", GOAL, "--json"], fake.url, tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["strategist"] == "llm" and record["model"] == "fake-model"
    assert record["usage"]["requests"] == 2 and fake.count == 2
    assert KEY not in proc.stdout + proc.stderr


def test_cli_errors_are_one_line_without_the_key(tmp_path):
    with FakeLLM([status(500, f"internal error, key={KEY}")], repeat_last=True) as fake:
        proc = run_cli(["plan", GOAL], fake.url, tmp_path)
    assert proc.returncode == 1
    assert fake.count == 3
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("tunefleet: error: the model endpoint at ") and "(500)" in lines[-1]
    assert KEY not in proc.stdout + proc.stderr



def test_servers_that_omit_call_ids_or_send_arguments_as_an_object(facts):
    """Some local servers do; the conversation stays well formed (every call answered by id)."""
    odd = reply({"type": "function", "function": {"name": "inspect_hosts", "arguments": {}}})
    fake, plan = plan_with([odd, reply(optimize(GOOD))], facts)
    assert fake.count == 2
    sent = fake.messages(-1)
    call_id = sent[2]["tool_calls"][0]["id"]
    assert call_id and sent[2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert sent[3]["role"] == "tool" and sent[3]["tool_call_id"] == call_id


# --- hosts that share one kernel --------------------------------------------------------------

@pytest.fixture()
def shared() -> dict:
    return {n: host_facts(n, "one-boot") for n in ("h1", "h2", "h3")}


def test_the_facts_say_the_hosts_share_a_kernel_and_which_knobs_are_excluded(shared):
    fake, _ = plan_with([reply(call("list_tunables", {})), reply(optimize(GOOD))], shared)
    task = fake.requests[0]["messages"][1]["content"]
    assert "h1, h2, h3 share one kernel" in task
    assert "vm.swappiness" in task and "kernel.sched_autogroup_enabled" in task and "net.core.somaxconn" not in task
    listed = json.loads(fake.tool_results(1)[0])
    names = {t["name"] for t in listed["tunables"]}
    assert "net.core.somaxconn" in names and not any(n.startswith(("vm.", "kernel.", "fs.")) for n in names)
    assert "share one kernel" in listed["not_available_on_these_hosts"]["vm.swappiness"]


def test_a_kernel_wide_knob_in_the_answer_is_dropped_with_a_note(shared):
    answer = copy.deepcopy(GOOD)
    answer["action_space"].append({"param": "vm.swappiness", "min": 0, "max": 60, "rationale": "keep backends in RAM"})
    fake, plan = plan_with([reply(optimize(answer))], shared)
    assert fake.count == 1
    assert plan.spec.knob_names == ["net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout"]
    assert list(plan.left_out) == ["vm.swappiness"]
    assert "h1, h2, h3 share one kernel" in plan.rationale["vm.swappiness"]
    assert len(plan.notes) == 1 and "vm.swappiness" in plan.notes[0] and "--limit h1" in plan.notes[0]
    from controller.catalog import Catalog
    from controller.gate import validate
    validate(plan.spec, Catalog.default(), shared)  # the same gate as `run`: it passes


def test_a_knob_the_benchmark_cannot_see_is_left_out_with_the_reason(facts):
    """somaxconn takes effect at listen(): pgbench against a PostgreSQL the spec never restarts
    could not measure it, so the plan drops it and says why, and the rest of the answer stands."""
    answer = copy.deepcopy(GOOD)
    answer["action_space"].insert(0, {"param": "net.core.somaxconn", "min": 128, "max": 4096, "rationale": "bursts"})
    fake, plan = plan_with([reply(optimize(answer))], facts)
    assert fake.count == 1
    assert plan.spec.knob_names == ["net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout"]
    assert "when a server calls listen()" in plan.left_out["net.core.somaxconn"]
    assert any("left out net.core.somaxconn" in n and "service" in n for n in plan.notes)


def test_an_answer_of_only_kernel_wide_knobs_is_asked_again(shared):
    only_vm = variant(action_space=[{"param": "vm.swappiness", "min": 0, "max": 60, "rationale": "r"},
                                    {"param": "vm.dirty_ratio", "min": 5, "max": 40, "rationale": "r"}])
    fake, plan = plan_with([reply(optimize(only_vm)), reply(optimize(GOOD))], shared)
    assert fake.count == 2
    feedback = fake.tool_results(1)[0]
    assert "REJECTED" in feedback and "vm.swappiness, vm.dirty_ratio" in feedback and "per-namespace" in feedback
    assert plan.spec.knob_names == ["net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout"] and plan.notes == []


def test_the_users_benchmark_tools_reach_the_model_and_its_gate(tmp_path, facts):
    from controller.catalog import Catalog

    extra = tmp_path / "catalog.yml"
    extra.write_text("benchmark_tools: [k6]\n")
    k6 = variant(benchmark_command="k6 run /srv/load.js", reward_metric="rps", reward_pattern=r"rps=(\d+)")
    with FakeLLM([reply(optimize(k6))]) as fake:
        p = choose(GOAL, facts, config=config_for(fake), catalog=Catalog.load_extra(extra))
    assert p.spec.benchmark_command == "k6 run /srv/load.js"
    assert "- k6: added by the user's catalog file" in fake.requests[0]["messages"][0]["content"]
    with pytest.raises(ModelError, match="not a known benchmark tool"):
        plan_with([reply(optimize(k6))], facts, repeat_last=True)
