"""Everything the model is told, in one place: the system prompt (an expert Linux sysadmin who
designs an experiment, with the built-in workload catalog as worked examples), the tools it may
call, the task, and the messages that steer it back when it wanders."""

from __future__ import annotations

import json
from typing import Any

from controller import rewards
from controller.benchcheck import tools_summary

OPTIMIZE = "optimize_workload"

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "inspect_hosts",
        "description": "The hosts to tune, as their agents reported them: kernel, distro, CPUs, memory, "
                       "which benchmark tools and services are installed, which hosts share one kernel.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    }},
    {"type": "function", "function": {
        "name": "list_tunables",
        "description": "The kernel settings (sysctls) you may put in action_space: safe bounds, type, scope "
                       "(per network namespace or kernel-wide), what each does, and each host's current value. "
                       "Only these names exist for tuning.",
        "parameters": {"type": "object", "properties": {
            "prefix": {"type": "string", "description": "Only names starting with this, e.g. 'net.ipv4.' or 'vm.'"},
        }, "additionalProperties": False},
    }},
    {"type": "function", "function": {
        "name": OPTIMIZE,
        "description": "Submit the experiment design. It is validated (known tunables that exist on the hosts, "
                       "ranges within safe bounds, a known benchmark tool without shell syntax); problems come "
                       "back as the result and you submit a corrected design.",
        "parameters": {"type": "object", "properties": {
            "config_json": {"type": "string", "description": "The whole configuration as one JSON object, encoded as "
                                                             "a string."},
        }, "required": ["config_json"], "additionalProperties": False},
    }},
]

SHAPE = """\
config_json is a JSON object with these fields:
  workload_name      short name of the workload, e.g. "PostgreSQL OLTP"
  benchmark_command  ONE invocation of a benchmark tool, run on every host without a shell,
                     repeated many times: it must finish in well under a minute and leave the
                     host as it found it. No ; && | backticks $( ) redirections or $VARIABLES,
                     no setup steps (pgbench -i, sysbench prepare/cleanup).
  reward_metric      the number to read from the benchmark's output (the list below)
  reward_goal        optional: "maximize" or "minimize" (default: the metric's own)
  action_space       2 to 6 knobs: {"param": sysctl name, "min": n, "max": n, "rationale": "..."}
                     or {"param": name, "values": [choices], "rationale": "..."}; vectors such as
                     net.ipv4.tcp_rmem take "min": "4096 4096 4096", "max": "4096 131072 6291456".
                     Names and bounds must come from list_tunables; ranges must lie within the
                     safe bounds.
  state_space        optional: metrics to observe, e.g. [{"metric": "cpu_util"}, {"metric": "psi_io_some"}]
  benchmark_timeout  optional: seconds before one benchmark run is stopped (default 120)
  benchmark_cwd      optional: folder the benchmark runs in
  initial_candidates 1 to 3 complete configurations an expert would try first, each
                     {"values": {every knob of action_space: a value inside its range}, "reason": "one line"};
                     every search evaluates them before its own proposals.
  constraints        optional: bounds on other metrics the benchmark prints, when the goal has two
                     sides ("more requests per second but p99 under 20 ms"):
                     [{"metric": "latency_p99_ms", "max": 20}] (or "min"); a winner that breaks one
                     is never claimed
  report_metrics     optional: other metrics to measure and report, e.g. ["latency_p99_ms"]
  service, setup, reset, warmup, teardown
                     optional: a private server the run itself sets up, starts, restarts, resets
                     and removes, with tunefleet-service KIND ACTION (KIND: postgres on port 15432,
                     nginx on 18080, redis on 16379; ACTION: setup, start, stop, reset, teardown):
                     {"setup": ["tunefleet-service postgres setup --scale 5"],
                      "service": {"name": "postgres", "start": "tunefleet-service postgres start",
                                  "stop": "tunefleet-service postgres stop", "ready": "127.0.0.1:15432"},
                      "reset": "tunefleet-service postgres reset", "warmup": "<the benchmark, shorter>",
                      "teardown": ["tunefleet-service postgres teardown"]}
                     and a benchmark pointed at that port. A knob that takes effect only when a
                     server listens again (net.core.somaxconn) is measurable only against such a
                     service (the run restarts it); against a server the run does not start it is
                     left out. A host's own services are never restarted by a plan.
Every knob needs a "rationale": one or two sentences on why it could move the reward metric
for THIS workload on THESE hosts. Knobs with no plausible effect waste benchmark runs."""


def reward_metrics() -> str:
    return "\n".join(f"- {m.name} ({m.goal}): {m.example}" for m in rewards.METRICS.values())


def system_prompt(examples: list[dict], tools=()) -> str:
    """tools: benchmark programs the user's catalog file allows besides the known ones."""
    shown = "\n\n".join(f"Example ({e.get('workload', 'workload')}): {e.get('description', '')}\n"
                        + json.dumps(e["config"]) for e in examples)
    return f"""You are an expert Linux sysadmin and performance engineer. A user describes what their \
hosts are for; you design an experiment that tunes the hosts' kernel settings (sysctls) by measurement: \
a benchmark that represents the workload, the metric that rewards it, and a few knobs with safe ranges. \
A reinforcement-learning tuner then runs the benchmark many times on every host, changing the knobs within \
your ranges, and verifies the best configuration against the original values.

Work like this:
1. Call inspect_hosts to see the machines: which benchmark tools and services exist decides the benchmark.
2. Call list_tunables to see which knobs exist there, their current values and safe bounds.
3. Call {OPTIMIZE} with config_json. If it comes back with problems, fix every one and call it again.

{SHAPE}

Known benchmark tools:
{tools_summary(tools)}

Reward metrics (what each reads from the output):
{reward_metrics()}

Be honest: if no knob plausibly affects the workload, say so in the rationale rather than invent an effect. \
Prefer a benchmark whose result the knobs can move (for example pgbench -C opens a connection per \
transaction, so TCP connection knobs matter). Hosts that share one kernel share every kernel-wide knob \
(vm.*, kernel.*, fs.*, most net.core.*): on them only per-namespace knobs (scope netns) can be tuned; \
the host summary says when that is the case, and kernel-wide knobs are then left out of the design.

The built-in workload catalog, as worked examples of good designs (adapt them to the hosts):

{shown}"""


def task(goal: str, host_summary: str) -> str:
    return (f"The user's goal: {goal.strip()}\n\nHosts: {host_summary}\n\n"
            f"Design the experiment and submit it with {OPTIMIZE}.")


NUDGE = (f"Please submit the experiment now: call {OPTIMIZE} with config_json (the JSON object described "
         "in the instructions, with a rationale for every knob). Do not answer in prose.")


def rejected(problems: list[str], attempt: int, limit: int) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    return (f"REJECTED (attempt {attempt} of {limit}): the configuration was not accepted.\n{lines}\n"
            f"Fix every problem above and call {OPTIMIZE} again with the complete corrected config_json.")


def declined() -> str:
    return ("The user declined to run this configuration. Ask what they would like to change; "
            f"submit a new design with {OPTIMIZE} when they tell you.")


def chat_system_addendum(host_summary: str) -> str:
    return (f"Hosts: {host_summary}\n"
            "You are talking with the user interactively. Answer questions briefly. When they ask to optimize "
            f"something, design the experiment and call {OPTIMIZE}; the tool asks the user to confirm, runs the "
            "tuning on the hosts and returns the measured result. Present results honestly: say the performance "
            "improved by X% only when the result says the change is significant, list the best configuration, "
            "and ask whether to keep it on the hosts (the user answers in the terminal).")


def results(result: dict) -> str:
    """A run's outcome as the model gets it: the numbers that decide what may be claimed."""
    keep = {k: result.get(k) for k in ("success", "workload_name", "verdict", "improvement", "best_config",
                                       "baseline_reward", "best_reward", "reward_metric", "goal", "evaluations")}
    v = result.get("verification") or {}
    keep["significant"] = v.get("significant")
    keep["ci_pct"] = [v.get("ci_low_pct"), v.get("ci_high_pct")] if v else None
    return "The tuning run finished. Result:\n" + json.dumps(keep, indent=1, default=str)
