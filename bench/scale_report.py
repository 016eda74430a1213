"""The scale benchmark's page section (bench/scale.py): the table, issue 10's targets met or not,
and what each column means."""

from __future__ import annotations

import math
import os
import time

ECHO = "echo x=1"  # the benchmark that does nothing, whose slope is the controller's cost
MEMORY_TARGET_MIB = 10e6 / 2**20  # issue 10: at most 10 MB of controller memory per host (RSS is in MiB)


def _label(r: dict) -> str:
    if not r["workers"].startswith("ray"):
        return {"naive": "naive loop (paramiko)"}.get(r["workers"], r["workers"])
    from controller.fleet.executor import parse_workers
    from controller.fleet.ray_executor import HOSTS_PER_ACTOR

    per = parse_workers(r["workers"])[1] or HOSTS_PER_ACTOR
    return f"{r['workers']} ({per} per actor: {r['actors']} actor{'s' if r['actors'] > 1 else ''})"


def line(r: dict) -> str:
    return (f"{_label(r)}, {r['hosts']} hosts, ACKs {r['acks']}: connect {r['connect_s']:.2f} s, first evaluation "
            f"{r['first_s']:.2f} s, marginal {r['marginal_ms']:.2f} ms/eval amortized ({r['per_host_ms']:.1f} ms per "
            f"host), cpu {r['cpu_per_eval_ms']:.2f} ms/eval, rss {r['rss_per_host_mb']:.1f} MiB/host, 1 s benchmark "
            f"rounds in {r['sleep_wall']:.2f} s")


def _row(r: dict) -> str:
    if r["workers"] == "naive":
        return (f"| {r['acks']} | {r['hosts']} | {_label(r)} | | | {r['slope_ms']:.2f} ms | {r['marginal_ms']:.2f} ms "
                f"| {r['per_host_ms']:.1f} ms | | | | | |")
    return (f"| {r['acks']} | {r['hosts']} | {_label(r)} | {r['connect_s']:.2f} s | {r['first_s']:.2f} s | "
            f"{r['slope_ms']:.2f} ms | {r['marginal_ms']:.2f} ms | {r['per_host_ms']:.1f} ms | "
            f"{r['cpu_per_eval_ms']:.2f} ms | {r['cpu_per_host_s']:.2f} s | {r['busy_share']:.0%} | "
            f"{r['rss_per_host_mb']:.1f} MiB | {r['efficiency']:.2f} |")


def reference_acks(rows: list[dict]) -> str:
    """The fleet the targets and notes are read on: the one whose route delays ACKs, as a real
    network does, when there is one; else the first measured."""
    return "delayed" if any(r["acks"] == "delayed" for r in rows) else rows[0]["acks"]


def at(rows: list[dict], hosts: int, workers: str) -> dict | None:
    """The row of `workers` at `hosts` on the reference fleet, if measured."""
    acks = reference_acks(rows)
    return next((r for r in rows if r["acks"] == acks and r["hosts"] == hosts and r["workers"] == workers), None)


def targets(rows: list[dict]) -> list[str]:
    """Issue 10's targets, each met or NOT met, on the reference fleet (reference_acks)."""
    acks = reference_acks(rows)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    def both(what: str, hosts: int, key: str, ok, fmt: str) -> None:
        """A target that threads and Ray must both meet at `hosts`, when both were measured there."""
        threads, ray = at(rows, hosts, "threads"), at(rows, hosts, "ray")
        if threads and ray:
            out.append(f"{what}: {verdict(ok(threads[key]) and ok(ray[key]))} "
                       f"(threads {threads[key]:{fmt}}, ray {ray[key]:{fmt}})")

    out = []
    for hosts, bound in ((3, 5.0), (64, 2.0)):
        both(f"marginal cost <= {bound:g} ms amortized at {hosts} hosts, threads and Ray", hosts, "marginal_ms",
             lambda v, b=bound: v <= b, ".2f")
    naive3, threads3, ray3 = at(rows, 3, "naive"), at(rows, 3, "threads"), at(rows, 3, "ray")
    if naive3 and threads3 and ray3:
        ratios = {w: naive3["marginal_ms"] / max(r["marginal_ms"], 1e-9) for w, r in (("threads", threads3),
                                                                                         ("ray", ray3))}
        out.append(f">= 9x below the naive loop at 3 hosts (ACKs {acks}): {verdict(min(ratios.values()) >= 9)} "
                   f"(naive {naive3['marginal_ms']:.1f} ms: {ratios['threads']:.1f}x threads, "
                   f"{ratios['ray']:.1f}x ray)")
    for hosts, bound in ((16, 0.95), (64, 0.90)):
        both(f"parallel efficiency >= {bound:.2f} at {hosts} hosts", hosts, "efficiency",
             lambda v, b=bound: v >= b, ".2f")
    threads, ray = at(rows, 16, "threads"), at(rows, 16, "ray")
    if threads and ray:
        extra = ray["marginal_ms"] / threads["marginal_ms"] - 1
        out.append("Ray at 16 hosts within 10% of threads: "
                   f"{verdict(extra <= 0.10 and ray['efficiency'] >= 0.9 * threads['efficiency'])} "
                   f"(marginal {extra:+.0%}, efficiency {ray['efficiency']:.2f} vs {threads['efficiency']:.2f})")
    mem = [r for r in rows if r["acks"] == acks and r["workers"] == "ray"]
    if mem:
        out.append("Ray <= 10 MB (9.5 MiB) of controller memory per host: "
                   + ", ".join(f"{r['hosts']} hosts {verdict(r['rss_per_host_mb'] <= MEMORY_TARGET_MIB)} "
                               f"({r['rss_per_host_mb']:.1f} MiB)" for r in mem))
    return out


def ray_floor(floor: tuple) -> str:
    """What one actor call costs by itself, and what that is per evaluation with a round's calls batched."""
    from controller.fleet.ray_executor import HOSTS_PER_ACTOR

    cost = floor[0] + floor[1]
    return (f"One Ray actor call that does nothing costs {floor[0]:.2f} ms of CPU in the driver and {floor[1]:.2f} ms "
            "in the actor here (bench/scale.py, `ray_call_floor`). A round of evaluations is one call per actor "
            f"(`call_many`: the hosts it holds, side by side), so with {HOSTS_PER_ACTOR} hosts per actor Ray's floor "
            f"is {cost / HOSTS_PER_ACTOR:.3f} ms of CPU per evaluation, where one call per evaluation cost "
            f"{cost:.2f} ms.")


def ray_round_trip(rows: list[dict], floor: tuple) -> str:
    """Why Ray trails threads at 16 hosts and not at 64: a round pays an actor call's round trip in
    series (``floor`` as ray_call_floor returns it); and whether that extra time was computing or
    waiting, from how busy the machine's cores were."""
    text = (f"A call to an actor, awaited on its own, takes {floor[3]:.2f} ms from the driver and back here "
            "(bench/scale.py, `ray_call_floor`): each round of evaluations pays it once, in series with the "
            "benchmarks, whatever the actor does.")
    sizes = [k for k in sorted({r["hosts"] for r in rows}) if at(rows, k, "threads") and at(rows, k, "ray")]
    if not sizes:
        return text
    k = 16 if 16 in sizes else sizes[-1]
    threads, ray = at(rows, k, "threads"), at(rows, k, "ray")
    assert threads is not None and ray is not None  # sizes holds only those where both were measured
    if k == 16:
        threads_round = threads["slope_ms"] * 16
        gap = (ray["slope_ms"] - threads["slope_ms"]) * 16
        text += (f" At 16 hosts a round of threads takes {threads_round:.1f} ms and Ray's {gap:.1f} ms more, of which "
                 f"the round trip alone is {floor[3]:.2f} ms ({floor[3] / threads_round:.0%} of the round); at 64 "
                 "hosts the round is four times longer and the same trip is lost in it.")
    t, r = threads["busy_share"], ray["busy_share"]
    text += (f" Over the echo runs at {k} hosts the machine's cores were busy {t:.0%} of the time with threads "
             f"and {r:.0%} with Ray")
    if r < t - 0.02:
        return text + (": with Ray they sit idle more often, waiting on the hop to the actor and back, so its extra "
                       "time is more latency than CPU.")
    return text + ": Ray's extra time is CPU (its own, and the actor's), not waiting."


def ray_memory(rows: list[dict], floor: tuple | None) -> str:
    """Ray's memory per host added, between the sizes measured: an actor is a fixed cost until it is full."""
    acks = reference_acks(rows)
    ray = sorted((r for r in rows if r["acks"] == acks and r["workers"] == "ray"), key=lambda r: r["hosts"])
    if len(ray) < 2:
        return ""
    steps = "; ".join(f"{a['hosts']} to {b['hosts']} hosts: "
                      f"{(b['rss_mb'] - a['rss_mb']) / (b['hosts'] - a['hosts']):.1f} MiB "
                      "per host added" for a, b in zip(ray, ray[1:]))
    return (f"Ray's memory beyond the first actor: {steps}. A fleet smaller than an actor's share still pays the "
            f"whole actor, a Python process with ray imported ({ray[0]['rss_mb']:.0f} MiB at {ray[0]['hosts']} host"
            f"{'s' if ray[0]['hosts'] > 1 else ''}): with fewer than "
            f"{math.ceil(ray[0]['rss_mb'] / MEMORY_TARGET_MIB)} hosts in an "
            "actor, Ray's memory per host cannot be under 10 MB, and `--workers threads` (the default) is the "
            "executor for such fleets."
            + (f" An actor that imports nothing of ours (bench/scale.py, `ray_call_floor`) holds {floor[2]:.0f} MiB "
               "by itself: that much is Ray's." if floor else ""))


def per_actor(rows: list[dict], default: int) -> str:
    """Why the default number of hosts per actor, from the rows that vary it at the largest size."""
    from controller.fleet.executor import parse_workers

    acks = reference_acks(rows)
    top = max(r["hosts"] for r in rows if r["acks"] == acks)
    sweep = sorted(((parse_workers(r["workers"])[1] or default, r) for r in rows
                    if r["hosts"] == top and r["acks"] == acks and r["workers"].startswith("ray")), key=lambda x: x[0])
    if len(sweep) < 2:
        return ""
    figures = "; ".join(f"K = {k}: {r['marginal_ms']:.2f} ms marginal, efficiency {r['efficiency']:.2f}, "
                        f"{r['rss_per_host_mb']:.1f} MiB per host, connected in {r['connect_s']:.1f} s"
                        for k, r in sweep)
    small = next((k for k, r in sweep if r["rss_per_host_mb"] <= MEMORY_TARGET_MIB), None)
    why = (f"K = {small} is the smallest K measured here that keeps Ray under 10 MB per host once an actor is full"
           if small else "no K measured here kept Ray under 10 MB per host")
    return (f"Hosts per actor (`--workers ray:K`), at {top} hosts: {figures}. An actor is a Python process with ray "
            f"imported, its memory divided among its hosts: {why}. A larger K saves little more memory, puts more "
            f"hosts' SSH work behind one interpreter lock, and a lost actor takes more hosts out at once (each "
            f"is then reconnected in an actor of its own). The default is {default}. Fewer hosts than K share one "
            "actor, so a small fleet still pays a whole process.")


def section(rows: list[dict], args, sizes: list[int], ray_start_s: float | None, own_ms: float,
             floor: tuple | None, loads: tuple[float, float]) -> str:
    from controller.fleet.ray_executor import HOSTS_PER_ACTOR

    cmd = (".venv/bin/python bench/scale.py " + " ".join(f"--hosts {h}" for h in args.hosts)
           + f" --sizes {','.join(map(str, sizes))} --per-actor {args.per_actor} --rounds {args.rounds} "
           f"--sleep-rounds {args.sleep_rounds} --repeats {args.repeats} --out {args.out}")
    table = ["| fleet route ACKs | hosts | workers | connect + deploy + hello | first evaluation done | wall per "
             "evaluation, echo included (amortized) | marginal cost per evaluation (amortized) | per evaluation per "
             "host | controller CPU per evaluation | controller CPU per host | cores busy (echo runs) | RSS per host | "
             "parallel efficiency (1 s benchmark) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table += [_row(r) for r in rows]
    return "\n".join([
        "## Fleet scale: threads, Ray and the naive loop",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')} on local fleets ({os.cpu_count()} cores shared by every host, "
        f"the controller and whatever else ran; 1-minute load average {loads[0]:.1f} when it started, "
        f"{loads[1]:.1f} when it ended, its own fleets and actors included), "
        f"local Ray, `--workers ray` = up to {HOSTS_PER_ACTOR} hosts per actor"
        + (f" (starting Ray itself took {ray_start_s:.1f} s once, before the first row)" if ray_start_s else "")
        + ":",
        "",
        "```",
        "make bench-scale   # brings up its own fleets (FLEET_NAME=scale, 64 hosts, QUICKACK=0; FLEET_NAME=quick, "
        "3 hosts, QUICKACK=1), runs:",
        cmd,
        "```",
        "",
        *table,
        "",
        "Targets (issue 10):",
        "",
        *[f"- {line}" for line in targets(rows)],
        "",
        per_actor(rows, HOSTS_PER_ACTOR),
        "",
        ray_memory(rows, floor),
        "",
        *([ray_round_trip(rows, floor), ""] if floor else []),
        "Fleet route ACKs: *delayed* is a fleet brought up with `QUICKACK=0`, whose route acknowledges after the "
        "40 ms delayed-ACK timer as a real network does; *at once* is `QUICKACK=1`, the default local fleet, which "
        "acknowledges at once. The naive loop (paramiko without TCP_NODELAY, one exec per step) waits for a "
        "delayed ACK on nearly every exec. tunefleet keeps one channel per host open and sets TCP_NODELAY on its "
        "own socket; whether delayed ACKs still cost it anything shows in its rows on the two fleets.",
        "",
        f"Marginal cost: the slope of wall time between {args.rounds.replace(',', ' and ')} rounds of `{ECHO}` "
        f"on every host (the median of {args.repeats} such pairs of runs: this machine's own background work comes "
        f"and goes; the naive loop, one pair), minus the benchmark's own time ({own_ms:.1f} ms: `{ECHO}` started and "
        "reaped on this "
        "machine, divided by the hosts running it side by side; started from this Python process it costs more "
        "than from the agent's, so at 1 host the difference can come out below zero: the wall column is the slope "
        "itself); amortized = per evaluation of the fleet (hosts run side by side), per host = what one host's "
        "evaluation costs end to end. The naive loop (bench/naive_loop.py) runs the same rounds with one paramiko "
        "exec per `sysctl -w`, per benchmark and per /proc read. Controller CPU: this process, all it started "
        "(with Ray its daemons) and the actors, over the two echo runs. Cores busy: the whole machine's CPU time "
        "over those runs (every process, the hosts' included) against all its cores' time (/proc/stat). Parallel "
        "efficiency: T(1 host) / T(k hosts) "
        "for the same number of rounds of `sleep 1` (ray:K against 1 host of ray; the median of the repeats). RSS per "
        "host: for threads the "
        "growth of this process and its children over connecting; for Ray the driver's growth plus every actor's "
        "process, divided by the hosts (Ray's own daemons not counted). The rows, with each pair's slope: "
        "docs/benchmarks-scale.json."
        + (" " + ray_floor(floor) if floor else ""),
    ])
