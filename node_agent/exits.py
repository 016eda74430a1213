"""Commands the agent runs when it stops: a service's stop, a workload's teardown.

A run that starts a server or prepares files on a host registers how to undo it (``on_exit``)
before doing it, and the registration is on disk (tmp file + fsync + rename, like the journal)
before the reply. Every way the agent stops runs them, newest first, before the knobs are
restored: ``bye``, EOF, a signal, the heartbeat bound. An agent that died without running them
leaves the file behind, and the next agent in this state folder runs them at its start, whatever
the boot: a stop of a server that is not running and a removal of files already gone must succeed
(the built-in ones do). Each command is bounded by its timeout. Stdlib only, Python >= 3.7.
"""

import json
import logging
import os

from node_agent import journal, runner, steps

FILE = "exits.json"

log = logging.getLogger("tunefleet.agent")


class Exits:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.entries = []  # [(key, raw steps)] in order of registration

    def keys(self):
        return [key for key, _ in self.entries]

    def _save(self):
        if self.entries:
            data = json.dumps({"pid": os.getpid(), "entries": [[k, s] for k, s in self.entries]}).encode("utf-8")
            journal.write_file_atomic(os.path.join(self.state_dir, FILE), data, 0o600)
        else:
            journal.remove_file(self.state_dir, FILE)

    def register(self, key, raw):
        """Remember ``raw`` steps under ``key`` (replacing an earlier registration); on disk first."""
        steps.prepare(raw)  # refused now, not at exit
        old = list(self.entries)
        self.entries = [(k, s) for k, s in self.entries if k != key] + [(key, raw)]
        try:
            self._save()
        except OSError:
            self.entries = old
            raise
        return self.keys()

    def run(self, key=None, emit=None):
        """Run the steps of ``key`` (None: all, newest first) and forget them; a report per step.
        A step that fails is reported, never raised: the others still run."""
        chosen = [(k, s) for k, s in reversed(self.entries) if key is None or k == key]
        reports = []
        for k, raw in chosen:
            for report in _run_each(raw, emit):
                reports.append(dict(report, key=k))
        self.entries = [(k, s) for k, s in self.entries if (k, s) not in chosen]
        self._save()
        return reports

    def recover(self):
        """At start: run what a dead agent registered and never ran."""
        try:
            with open(os.path.join(self.state_dir, FILE)) as f:
                document = json.load(f)
            self.entries = [(str(k), s) for k, s in document["entries"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            if not isinstance(e, FileNotFoundError):
                log.warning("ignoring unreadable %s: %s", FILE, e)
            return []
        log.info("running the exit steps a stopped agent left: %s", ", ".join(self.keys()))
        return self.run()


def _run_each(raw, emit):
    for step in raw:
        try:
            prepared = steps.prepare([step])
            done = steps.run(prepared, {}, lambda: None, emit)
            yield dict(done[-1], ok=True)
        except steps.StepFailed as e:
            yield {"what": e.report["what"], "ok": False, "message": e.report["message"]}
        except (runner.BadArgs, OSError) as e:
            yield {"what": step.get("what", "?") if isinstance(step, dict) else "?", "ok": False, "message": str(e)}
