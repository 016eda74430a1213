"""`tunefleet mcp` through the SDK's own client over stdio, where no fleet is needed: the tool list
and its safety labels, --read-only, a hostile spec refused with the command line's message, and a
run whose hosts cannot be reached (status at once, then the reason). The runs themselves are in
tests/e2e/test_mcp_e2e.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.fake_llm import FakeLLM, optimize, reply
from tests.mcp_session import ROOT, serving

CHANGERS = {"start_run", "cancel_run", "restore"}
EVERY = {"list_workloads", "plan", "check", "hosts", "start_run", "run_status", "watch_run", "cancel_run", "runs",
         "show", "report", "export", "restore"}
STORM = {"workload_name": "connection storm", "reward_metric": "elapsed_ms",
         "benchmark_command": "tunefleet-bench accept-storm --clients 64", "benchmark_timeout": 20,
         "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 4096}]}


@pytest.fixture()
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def nowhere(tmp_path, closed_port) -> Path:
    """An inventory whose one host never answers: the gate must refuse before anything connects."""
    p = tmp_path / "nowhere.yml"
    p.write_text(f"hosts:\n  n1: {{host: 127.0.0.1, port: {closed_port}, user: root}}\n")
    return p


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**environ, "COLUMNS": "200", **(env or {})})


def cli_error(proc: subprocess.CompletedProcess) -> str:
    """The one line the command line prints for a refusal (exit 2 for bad input)."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tunefleet: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0][len("tunefleet: error: "):]


def test_every_tool_that_changes_a_host_says_so_and_read_only_offers_only_the_others(tmp_path):
    async def listed(*args):
        async with serving(*args, runs=tmp_path / "runs") as s:
            return {t.name: t for t in (await s.client.list_tools()).tools}

    full = anyio.run(listed)
    assert set(full) == EVERY
    for name, tool in full.items():
        changes = name in CHANGERS
        assert ("CHANGES THE HOSTS" in tool.description) == changes, name
        assert tool.annotations.read_only_hint is (not changes), name
        assert tool.output_schema and tool.output_schema.get("type") == "object", name  # typed answers
    assert set(full["start_run"].input_schema["properties"]) >= {"goal", "spec", "hosts", "budget", "strategy"}
    assert full["start_run"].input_schema["properties"]["strategy"]["enum"] == ["auto", "bo", "ppo", "random"]
    read_only = anyio.run(listed, "--read-only")
    assert set(read_only) == EVERY - CHANGERS


def test_a_spec_with_a_denied_sysctl_is_refused_with_the_clis_own_message(tmp_path, nowhere):
    hostile = {**STORM, "action_space": [{"param": "kernel.randomize_va_space", "min": 0, "max": 2}]}
    spec_file = tmp_path / "hostile.json"
    spec_file.write_text(json.dumps(hostile))
    expected = cli_error(cli("plan", "--spec", str(spec_file)))
    assert "kernel.randomize_va_space" in expected

    async def refused():
        async with serving("--hosts", str(nowhere), runs=tmp_path / "runs") as s:
            return await s.call("start_run", spec=hostile)

    call = anyio.run(refused)
    assert call.error == expected
    assert not (tmp_path / "runs").exists()  # no run folder, nothing started


def test_a_destructive_benchmark_is_refused_as_the_clis_model_spec_is(tmp_path, nowhere):
    """A client's spec is a model's: `rm -rf` is refused as when the command line's model proposes it
    (a spec file of the user's own may run any program; a model's may not)."""
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    hostile = {**STORM, "benchmark_command": f"rm -rf {sentinel}"}
    with FakeLLM([reply(optimize(hostile))], repeat_last=True) as fake:
        proc = cli("plan", "optimize for connection storms", "--model", "fake-model",
                   env={"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode != 0
    problem = ("benchmark_command runs `rm`, which is not a benchmark tool and can change the system or destroy "
               "data: refused")
    assert problem in proc.stderr

    async def refused():
        async with serving("--hosts", str(nowhere), runs=tmp_path / "runs") as s:
            return await s.call("start_run", spec=hostile, budget=2)

    call = anyio.run(refused)
    assert call.error == f"the spec for 'connection storm' cannot run as is: {problem}"
    assert sentinel.read_text() == "still here"
    assert not (tmp_path / "runs").exists()


def test_run_status_answers_while_the_run_connects_and_then_says_why_it_failed(tmp_path, nowhere, closed_port):
    async def session():
        async with serving("--hosts", str(nowhere), "--connect-timeout", "2", runs=tmp_path / "runs") as s:
            started = await s.ok("start_run", spec=STORM, budget=2)
            first = await s.ok("run_status", run_id=started["run_id"])
            last = await s.ok("watch_run", run_id=started["run_id"], timeout_seconds=60)
            return started, first, last

    started, first, last = anyio.run(session)
    assert started["state"] == "connecting" and started["budget"] == 2
    assert first["run_id"] == started["run_id"] and first["state"] in ("connecting", "checking", "failed")
    assert last["state"] == "failed"
    assert last["error"] == "no host could be reached; nothing was changed"  # as `tunefleet run` says it
    assert any(m.startswith("n1: ") and str(closed_port) in m for m in last["messages"]), last["messages"]
    assert last["run_dir"] is None and not (tmp_path / "runs").exists()  # nothing ran, no folder left behind


def test_progress_lines_and_restore_reports_carry_what_the_run_reported():
    from controller.errors import AgentError
    from controller.fleet.fleet import Outcome
    from controller.mcpserver.models import BestSoFar, RunStatus
    from controller.mcpserver.runs import restore_report
    from controller.mcpserver.tools import progress_line

    status = RunStatus(run_id="r", state="running", phase="search", evaluations=4, budget=6,
                       best_so_far=BestSoFar(host="h2", values={"net.core.somaxconn": "4096"}, change_pct=98.15))
    assert progress_line(status) == "running: search, 4/6 evaluations, best so far +98.2% on h2 (unverified)"
    closed = {"h1": Outcome("h1", {"restored": {"net.core.somaxconn": "128"}, "unchanged": {}, "errors": {},
                                   "foreign": {}, "left": []}),
              "h2": Outcome("h2", error=AgentError("left changed: net.core.somaxconn (EPERM)", "h2", "OSError"))}
    report = restore_report(closed, {})
    assert report.hosts["h1"].restored == {"net.core.somaxconn": "128"} and report.hosts["h1"].error is None
    assert "left changed" in report.hosts["h2"].error
    assert report.clean is False
    assert restore_report({"h1": closed["h1"]}, {}).clean is True


def test_streamable_http_serves_the_read_only_tools_on_loopback(tmp_path, closed_port):
    """--transport http: the same server behind streamable HTTP (the SDK's client by URL)."""
    from mcp import Client

    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "mcp", "--transport", "http", "--port",
                             str(closed_port), "--read-only"], cwd=ROOT, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TUNEFLEET_RUNS": str(tmp_path / "runs")})

    async def session():
        with anyio.fail_after(60):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", closed_port), 0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None, "the server exited"
                    await anyio.sleep(0.2)
        async with Client(f"http://127.0.0.1:{closed_port}/mcp") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            workloads = (await client.call_tool("list_workloads", {})).structured_content["workloads"]
            return names, workloads

    try:
        names, workloads = anyio.run(session)
    finally:
        proc.terminate()
        proc.wait(30)
    assert names == EVERY - CHANGERS
    assert "connection-storm" in {w["key"] for w in workloads}
    assert proc.returncode == 0
