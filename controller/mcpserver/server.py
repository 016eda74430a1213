"""`tunefleet mcp`: the tools of controller/mcpserver/tools.py declared to the official MCP SDK
(mcp 2.x, `MCPServer`), over stdio or streamable HTTP.

Each tool's parameters and return type are its schemas; its docstring is what the model reads,
and every tool that changes a host says so there (and in its annotations). `read_only=True`
declares only the tools that change nothing. A refusal (a hostile spec, an unknown run) comes
back as a tool error carrying the library's own message, the line the command line prints.

Imported only by the `mcp` command: the SDK loads with it, never with `tunefleet --help`.
(No `from __future__ import annotations` here: the SDK reads these annotations at run time.)
"""

import functools
import inspect
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from controller.errors import TunefleetError
from controller.export import FORMATS
from controller.mcpserver import models
from controller.mcpserver.tools import Tools
from controller.result import RunResult

INSTRUCTIONS = """tunefleet tunes Linux hosts' kernel settings (sysctls) by experiment: it runs a real benchmark on
every host, searches the knobs, verifies the best configuration against the hosts' original values and
restores every host at the end. A run takes minutes to hours: start_run answers at once with a run id;
follow it with watch_run (progress notifications) or run_status, stop it with cancel_run. Plan first
(plan, list_workloads) and show the user the spec: start_run changes the hosts' settings while it runs."""

Strategy = Literal["auto", "bo", "ppo", "random"]
Format = Literal[FORMATS]  # type: ignore[valid-type]
HostsArg = Annotated[str | None, Field(description="Inventory file (tunefleet YAML or Ansible); default: the "
                                       "server's --hosts.")]
LimitArg = Annotated[str | None, Field(description="Hosts to use, as an Ansible pattern (a,b  web*  group[0:2]).")]
RunId = Annotated[str, Field(description="A run id from start_run, a run folder, or a folder name from runs().")]

READS = ToolAnnotations(read_only_hint=True, open_world_hint=True)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


def refusals(fn):
    """A tunefleet refusal reaches the client as a tool error with its own message (the SDK hides
    the text of any other exception)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped_async(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except TunefleetError as e:
                raise ToolError(str(e)) from e
        return wrapped_async

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunefleetError as e:
            raise ToolError(str(e)) from e
    return wrapped


def build(tools: Tools, read_only: bool = False, **server_options: Any) -> MCPServer:
    """The server with every tool, or only those that change nothing."""
    server = MCPServer(name="tunefleet", instructions=INSTRUCTIONS, **server_options)
    for fn, changes in _planning(tools) + _running(tools) + _looking_back(tools):
        if read_only and changes:
            continue
        server.add_tool(refusals(fn), annotations=CHANGES if changes else READS, structured_output=True)
    return server


# Each group returns (tool function, changes a host); the functions close over `tools`.

def _planning(tools: Tools) -> list:
    """The tools about the hosts and the plan."""

    def list_workloads() -> models.Workloads:
        """The built-in workloads the planner knows (a goal such as "PostgreSQL" or "web server" picks one).
        Changes nothing."""
        return tools.list_workloads()

    def plan(goal: Annotated[str, Field(description="What the hosts are for, in plain words.")],
             hosts: HostsArg = None, limit: LimitArg = None) -> models.Plan:
        """Turn a goal into a validated tuning spec (benchmark, reward, knobs and ranges) and say why, checked
        against the hosts when an inventory is known (it starts tunefleet's agent on each host over SSH to read
        what they have). Changes no setting."""
        return tools.plan(goal, hosts, limit)

    def check(hosts: HostsArg = None, limit: LimitArg = None) -> models.CheckReport:
        """Connect to every host, start tunefleet's agent there and report what each host is (kernel, tools,
        services, round trip, knobs something else manages). Changes no setting."""
        return tools.check(hosts, limit)

    def hosts(inventory: HostsArg = None, limit: LimitArg = None) -> models.Hosts:
        """The hosts an inventory and a limit select and how each is reached, without connecting. Changes nothing."""
        return tools.hosts(inventory, limit)

    def restore(hosts: HostsArg = None, limit: LimitArg = None,
                unpersist: Annotated[bool, Field(description="Also delete /etc/sysctl.d/90-tunefleet.conf and put "
                                                 "its knobs back now.")] = False) -> models.RestoreReport:
        """CHANGES THE HOSTS: write back every original value tunefleet's agents journaled (after a crash, or
        after keep_best); a knob someone else changed since is left as they set it. Reports per host and knob."""
        return tools.restore(hosts, limit, unpersist)

    return [(list_workloads, False), (plan, False), (check, False), (hosts, False), (restore, True)]


def _running(tools: Tools) -> list:
    """The tools that start, follow and stop a run."""

    def start_run(
        goal: Annotated[str | None, Field(description="Plan this goal (as `tunefleet run GOAL`).")] = None,
        spec: Annotated[dict[str, Any] | None, Field(description="Or run this spec (as plan returns it). It is held "
                                                     "to the rules for a model's spec.")] = None,
        hosts: HostsArg = None, limit: LimitArg = None,
        budget: Annotated[int | None, Field(ge=1, le=10000, description="Benchmark evaluations for the search, "
                                            "across the fleet (default: the spec's, else 24).")] = None,
        strategy: Strategy = "auto",
        seed: int = 0,
        verify_repeats: Annotated[int, Field(ge=2, le=100)] = 5,
        baseline_repeats: Annotated[int | None, Field(ge=1, le=100)] = None,
        confirm_top: Annotated[int, Field(ge=0, le=20)] = 3,
        compare: Annotated[list[str] | None, Field(description="Expert profiles to measure beside the winner "
                                                   "(tuned:NAME, redis:docs; 'auto' for a built-in workload).")] = None,
        keep_best: Annotated[bool, Field(description="Leave the verified best configuration applied after the run "
                                         "(until reboot).")] = False,
        persist: Annotated[bool, Field(description="If the improvement is significant, also write it to "
                                       "/etc/sysctl.d/90-tunefleet.conf on every host (survives reboots).")] = False,
    ) -> models.RunStarted:
        """CHANGES THE HOSTS: start a tuning run and return its id at once. In the background it connects,
        checks the spec against the hosts, then applies candidate sysctl values and runs the benchmark on every
        host, verifies the best against the originals, and restores every host's original values at the end
        (unless keep_best or persist). Refused, with the reason, when the spec breaks a safety rule."""
        return tools.start_run(goal, spec, hosts, limit, budget, strategy, seed, verify_repeats, baseline_repeats,
                               confirm_top, compare, keep_best, persist)

    def run_status(run_id: RunId) -> models.RunStatus:
        """What a run of this server is doing now: state, phase, evaluations done against the budget, the best
        single sample so far, and once over the verdict with its 95% CI and every host's restore report.
        Answers at once. Changes nothing."""
        return tools.run_status(run_id)

    async def watch_run(run_id: RunId, ctx: Context,
                        timeout_seconds: Annotated[float, Field(ge=1, le=600)] = 50,
                        since: Annotated[int | None, Field(ge=0, description="Resume after this many events (the "
                                                           "last progress value, or a status's events).")] = None,
                        ) -> models.RunStatus:
        """Follow a run until it ends or timeout_seconds pass, with a progress notification at every phase and
        benchmark (at least once per fleet round); returns its status. Call again (with since=) while the
        state is not finished, cancelled or failed. Changes nothing."""
        return await tools.watch(run_id, timeout_seconds, _progress(ctx), since)

    async def cancel_run(run_id: RunId, ctx: Context,
                         wait_seconds: Annotated[float, Field(ge=0, le=3600)] = 300) -> models.RunStatus:
        """CHANGES THE HOSTS (back): stop a run; the benchmarks in flight finish, no new one starts, and every
        host's original values are written back. Returns the status with each host's restore report (state
        cancelling when the wait ran out first: run_status tells the rest)."""
        return await tools.cancel(run_id, wait_seconds, _progress(ctx))

    return [(start_run, True), (run_status, False), (watch_run, False), (cancel_run, True)]


def _looking_back(tools: Tools) -> list:
    """The tools about past runs: nothing they do changes a host."""

    def runs() -> models.Runs:
        """Every past run of this user (wherever its folder is): when, workload, strategy, hosts, verdict.
        Changes nothing."""
        return tools.runs()

    def show(run_id: RunId) -> RunResult:
        """A finished run's whole result (result.json): verdict, verification, best configuration, per host.
        Changes nothing."""
        return tools.show(run_id)

    def report(run_id: RunId) -> models.Report:
        """A run's summary as `tunefleet show` prints it, and the path of its HTML report (rebuilt in the run
        folder when missing). Changes no host."""
        return tools.report(run_id)

    def export(run_id: RunId, format: Format,
               force: Annotated[bool, Field(description="Also export a result that is not a verified "
                                                        "improvement.")] = False) -> models.Export:
        """A run's verified best configuration as a sysctl.d drop-in, TuneD profile, Ansible playbook, shell
        script or JSON, returned as text (nothing is written or applied). Changes nothing."""
        return tools.export(run_id, format, force)

    return [(runs, False), (show, False), (report, False), (export, False)]


def _progress(ctx: Context):
    async def tell(progress: float, message: str) -> None:
        await ctx.report_progress(progress, None, message)
    return tell
