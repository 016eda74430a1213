"""Continuing a run that died: ``tunefleet run --resume RUN_DIR``.

A run folder holds what a run decided and measured as it happened (controller/runs.py): the spec,
the options (options.json), each host's originals (hosts.json), the baseline once it finished
(baseline.json) and every evaluation (trials.jsonl, flushed line by line). A resumed run reads it
back and continues where the killed one stopped:

    baseline      baseline.json exists: each host's median, metrics and feature reference are
                  taken from it, nothing is re-measured (a partial baseline is measured again)
    search        every recorded search evaluation is replayed into the recorder, so the budget
                  left is the budget minus them; the strategy starts again from them: random
                  draws past the candidates already used, bo tells its study every one of them,
                  ppo loads the last checkpoint; priors already evaluated are skipped
    confirm       recorded re-measurements are handed back in the order pick_best asks for
                  them; only the missing ones are measured
    verify        always measured again: a partial interleaved A/B would mix samples taken an
                  interruption apart, which is the drift the interleaving exists to cancel

Before anything runs the hosts must be on their originals. An agent restores a stale journal when
it starts (hello reports it as ``recovered``); a value that still differs from hosts.json is asked
back from the journal (``restore``). A host that rebooted since (a run that dropped it for a
reboot) is on its boot values; the journal of its earlier boot, which its agent keeps aside, says
what the host held before the run: when that matches hosts.json the originals are written back
for the rest of the run (and the boot values restored at its end). One no journal holds is
refused, not written here: the agent would journal the wrong value as the original and put it
back at the end. Evaluations that were in flight at the kill were never recorded: they are
lost, so the spent evaluations never exceed the budget plus those.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import UserError
from controller.fleet.fleet import read_originals
from controller.learn.evaluation import HostEvaluator, Recorder, Trial
from controller.runs import RunDir

if TYPE_CHECKING:
    from controller.spec import TuningSpec

OPTIONS = "options.json"
BASELINE = "baseline.json"
PHASES = ("baseline", "search", "confirm", "verify")
_TRIAL_FIELDS = {f.name for f in fields(Trial)} - {"aggregates"}


# Options that decide what a run measures or leaves on its hosts: a resumed run is the run that was
# started, so these must be what options.json recorded (GOAL, --spec and --run-dir have no
# counterpart: the folder holds them). The others say how to reach the hosts, where host work
# runs or what is logged; a resumed run may change them.
BINDING = {"--budget": "budget", "--strategy": "strategy", "--seed": "seed", "--policy": "policy",
           "--verify-repeats": "verify_repeats", "--baseline-repeats": "baseline_repeats",
           "--confirm-top": "confirm_top", "--keep-best": "keep_best", "--persist": "persist",
           "--persist-file": "persist_file", "--catalog": "catalog"}
FREE = {"--heartbeat-timeout": "heartbeat_timeout", "--workers": "workers", "--tensorboard": "tensorboard",
        "--ssh-config": "ssh_config", "--rejoin-window": "rejoin_window", "--rejoin-interval": "rejoin_interval",
        "--force": "force"}


def check_options(stored: dict, given: dict) -> list[str]:
    """Options given on the command line of --resume (option -> value as options.json spells it),
    against the run's: one of BINDING that differs is refused (a UserError naming each), one of
    FREE is taken and said (the lines returned)."""
    recorded = {**stored, "persist": stored.get("persist_file") is not None}
    refused: list[str] = []
    notes: list[str] = []
    for option, value in given.items():
        key = BINDING.get(option) or FREE.get(option)
        if key is None:
            refused.append(option)
        elif value != recorded.get(key):
            was = recorded.get(key)
            started = "with it" if was is True else "without it" if was in (False, None) else f"with {was}"
            said = f"{option if value is True else f'{option} {value}'} (the run was started {started})"
            (refused if option in BINDING else notes).append(said)
    if refused:
        raise UserError(f"--resume continues the run as it was started: {', '.join(refused)} cannot change it")
    return [f"--resume: {n}" for n in notes]


def reapply(stored: dict, args, given: dict) -> None:
    """Set the arguments of `run --resume` (a namespace of the run command's parameters) to what
    the run was started with (options.json): BINDING ones always, FREE ones unless the command
    line gave them (``given``, checked by check_options). The spec comes from the run folder."""
    if not args.hosts:
        args.hosts, args.limit = Path(stored["hosts"]), stored.get("limit")
    args.goal, args.yes = None, True
    args.catalog_file = Path(stored["catalog"]) if stored.get("catalog") else None
    if args.ssh_config is None and stored.get("ssh_config"):
        args.ssh_config = Path(stored["ssh_config"])
    for key in ("strategy", "budget", "seed", "policy", "verify_repeats", "baseline_repeats", "confirm_top",
                "keep_best"):
        setattr(args, key, stored[key])
    args.persist, args.persist_file = bool(stored["persist_file"]), stored["persist_file"] or args.persist_file
    for option, key in FREE.items():
        if option not in given and key in stored and key != "ssh_config":
            setattr(args, key, stored[key])
    args.compare = args.compare or list(stored.get("compare") or [])


def record_options(run: RunDir, options, invocation: dict | None) -> None:
    """options.json: what --resume needs to run the rest the same way (the resolved strategy)."""
    keep = ("strategy", "budget", "seed", "baseline_repeats", "verify_repeats", "episode_steps", "confirm_top",
            "confirm_repeats", "min_effect_pct", "policy")
    run.write(OPTIONS, {**{k: getattr(options, k) for k in keep}, **(invocation or {})})


def record_baseline(run: RunDir, baselines: dict, evaluators: dict[str, HostEvaluator]) -> None:
    """baseline.json, written when the baseline phase finished: its presence says so. It keeps what
    trials.jsonl does not, each host's absolute metric aggregates (the features' reference)."""
    run.write(BASELINE, {n: {"median": ev.baseline, "aggregates": ev.baseline_aggregates, "dropped": ev.dropped,
                             **baselines.get(n, {})} for n, ev in evaluators.items()})


def _read(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--resume {path.parent}: cannot read {what}: {e}") from None


@dataclass
class Resume:
    run: RunDir
    spec: dict
    options: dict
    hosts: dict                               # hosts.json: name -> {facts, originals}
    trials: list[Trial]                       # every recorded evaluation, in order
    baseline: dict | None                     # baseline.json, when the baseline finished
    restored: dict[str, dict[str, str]] = field(default_factory=dict)
    checkpoint: Path | None = None            # the PPO checkpoint the search continued from
    notes: list[str] = field(default_factory=list)  # what was repaired or changed, one line each

    @classmethod
    def load(cls, path: Path) -> Resume:
        """The run folder's record, or a UserError saying why it cannot be resumed."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"--resume {path}: no such folder")
        if (path / "result.json").exists():
            raise UserError(f"--resume {path}: the run is complete already (result.json exists)")
        missing = [n for n in ("spec.json", OPTIONS, "hosts.json") if not (path / n).is_file()]
        if missing:
            raise UserError(f"--resume {path}: not a resumable run folder (no {', '.join(missing)})")
        options = _read(path / OPTIONS, OPTIONS)
        if not options.get("hosts"):
            raise UserError(f"--resume {path}: the run was not started by `tunefleet run` (no inventory recorded)")
        baseline = _read(path / BASELINE, BASELINE) if (path / BASELINE).is_file() else None
        spec, hosts = _read(path / "spec.json", "spec.json"), _read(path / "hosts.json", "hosts.json")
        run, notes = RunDir(path), []
        cut = run.repair_trials()
        if cut:
            notes.append(f"--resume: trials.jsonl ended in a partial line ({cut} bytes, cut off by the kill): "
                         "dropped it, that evaluation is measured again")
        try:
            trials = [Trial(**{k: v for k, v in t.items() if k in _TRIAL_FIELDS}) for t in run.trials()]
        except (TypeError, ValueError) as e:
            raise UserError(f"--resume {path}: trials.jsonl cannot be read: {e}") from None
        return cls(run, spec, options, hosts, trials, baseline, notes=notes)

    def of(self, phase: str) -> list[Trial]:
        return [t for t in self.trials if t.phase == phase]

    @property
    def phase(self) -> str:
        """The phase the run resumes in: the first one not finished."""
        if self.baseline is None:
            return "baseline"
        if self.of("verify"):
            return "verify"
        if self.of("confirm") or len(self.of("search")) >= self.options["budget"]:
            return "confirm"
        return "search"

    def check_fleet(self, fleet, spec: TuningSpec) -> None:
        """The same hosts and knobs as the run that died, each back on its recorded originals."""
        gone = [n for n in self.hosts if n not in fleet.hosts]
        if gone:
            raise UserError(f"--resume: host(s) of the run not connected: {', '.join(gone)}")
        extra = [n for n in fleet.hosts if n not in self.hosts]
        if extra:
            raise UserError(f"--resume: host(s) not in the run: {', '.join(extra)} (use --limit)")
        missing = sorted({k for h in self.hosts.values() for k in spec.knob_names if k not in h["originals"]})
        if missing:
            raise UserError(f"--resume: knob(s) not in the run's hosts.json: {', '.join(missing)}")
        for name, host in fleet.hosts.items():
            self.restored[name] = dict(host.facts.get("recovered") or {})
        for attempt in ("restore", "check"):
            now = read_originals(fleet, spec.knob_names)  # a knob gone from a host is refused here
            differ = {n: {k: (v, now[n].get(k)) for k, v in self.hosts[n]["originals"].items()
                          if k in spec.knob_names and now[n].get(k) != v} for n in now}
            differ = {n: d for n, d in differ.items() if d}
            if not differ:
                return
            if attempt == "restore":  # whatever a journal still holds (a kept or half-restored one)
                for name in differ:
                    report = fleet.hosts[name].request("restore", {}, timeout=30.0)
                    self.restored[name].update(report.get("restored") or {})
                    self._rebooted(name, fleet.hosts[name], {k: w for k, (w, _) in differ[name].items()})
        name, knobs = next(iter(differ.items()))
        k, (want, got) = next(iter(knobs.items()))
        raise UserError(f"--resume: {name}: {k} is {got}, the run measured its baseline at {want}, and no "
                        "journal holds that original; set it back (sysctl -w) before resuming")

    def _rebooted(self, name: str, host, want: dict[str, str]) -> None:
        """A host that rebooted since the run (another boot_id; often one the run dropped for it) is
        on its boot values. Its agent kept the journal of the earlier boot (hello's ``discarded``):
        when that journal's originals are the run's, they are this host's values from before the
        run, so they are written back for the rest of the run (journaled over the boot values,
        which the end of the run restores). Anything else is left for check_fleet to refuse."""
        recorded = (self.hosts.get(name) or {}).get("facts") or {}
        if not recorded.get("boot_id") or host.facts.get("boot_id") == recorded.get("boot_id"):
            return
        earlier: dict[str, str] = {}
        for journal in (host.facts.get("discarded") or {}).values():
            if journal.get("boot_id") == recorded["boot_id"]:
                earlier.update(journal.get("originals") or {})
        if not want or any(earlier.get(k) != v for k, v in want.items()):
            return
        reply = host.request("apply", {"values": want}, timeout=30.0)
        if reply.get("refused"):
            return
        self.restored[name].update(want)
        self.notes.append(f"--resume: {name} rebooted since the run (boot_id {recorded['boot_id'][:8]}… → "
                          f"{str(host.facts.get('boot_id'))[:8]}…); the journal of its earlier boot confirms the "
                          f"run's originals ({', '.join(f'{k} = {v}' for k, v in want.items())}): written back for "
                          "the rest of the run, its boot values are restored at the end")

    def attach(self, recorder: Recorder, evaluators: dict[str, HostEvaluator]) -> None:
        """Put the finished evaluations back in the recorder and the hosts' evaluators."""
        keep = {"baseline", "search", "confirm"} if self.baseline is not None else set()
        for t in self.trials:
            if t.phase in keep:
                recorder.replay(t)
        if self.baseline is None:
            return
        for name, ev in evaluators.items():
            b = self.baseline.get(name) or {}
            recorded = [t for t in self.of("confirm") if t.host == name]
            replay = ConfirmReplay(ev.host, ev.spec, recorder, recorded, ev.measure)
            replay.baseline, replay.baseline_aggregates = b.get("median"), b.get("aggregates") or {}
            replay.dropped = b.get("dropped")
            evaluators[name] = replay

    def baselines(self) -> dict[str, dict]:
        """The baseline phase's outcome as tune() builds it, for the hosts that produced one."""
        keys = ("samples", "summary", "metrics")
        return {n: {k: b[k] for k in keys} for n, b in (self.baseline or {}).items() if b.get("summary")}

    def prepare_search(self, ctx) -> None:
        """PPO continues from its last checkpoint (written after every update)."""
        latest = self.run.path / "ppo" / "ppo_latest.zip"
        if self.options["strategy"] == "ppo" and latest.is_file():
            ctx.policy_in = self.checkpoint = latest
            ctx.log(f"ppo continues from its checkpoint {latest}")

    def summary(self) -> dict:
        replayed = {p: len(self.of(p)) for p in ("baseline", "search", "confirm")} if self.baseline else {}
        return {"from_phase": self.phase, "evaluations_replayed": len(self.of("search")) if self.baseline else 0,
                "replayed": replayed,
                "discarded": {p: len(self.of(p)) for p in PHASES if p not in replayed and self.of(p)},
                "restored": {n: v for n, v in self.restored.items() if v},
                **({"rebooted": [n for n in self.notes if " rebooted since the run " in n]}
                   if any(" rebooted since the run " in n for n in self.notes) else {}),
                **({"checkpoint": str(self.checkpoint)} if self.checkpoint else {})}


class ConfirmReplay(HostEvaluator):
    """Hands back this host's recorded confirm measurements while they match what is asked, in order
    (pick_best asks in a fixed order); past the first mismatch everything is measured."""

    def __init__(self, host, spec: TuningSpec, recorder: Recorder, recorded: list[Trial], measure=None):
        super().__init__(host, spec, recorder, measure)
        self.recorded = deque(recorded)

    def evaluate(self, values, phase: str = "search", label: str = "", original: bool = False,
                 bounds: dict | None = None) -> Trial:
        if phase == "confirm" and self.recorded:
            t = self.recorded.popleft()
            if t.values == dict(values or {}):
                return t
            self.recorded.clear()
        return super().evaluate(values, phase=phase, label=label, original=original, bounds=bounds)
