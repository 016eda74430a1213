"""The run folder: everything a tuning run decided and measured, written as it happens.

    runs/<timestamp>-<workload>/
      spec.json        the spec that ran
      plan.json        how it was chosen (strategist, reasons, rationale per knob)
      hosts.json       each host's facts and original knob values
      options.json     how the run was started (strategy, budget, seed, inventory, ...): for --resume
      baseline.json    each host's baseline, once the baseline phase finished (controller/resume.py)
      trials.jsonl     one line per benchmark evaluation, appended and flushed as it happens
      ppo/             policy checkpoints
      result.json      the outcome (written atomically, last)
      report.html      the run told to a person (controller/htmlreport.py)

Runs go under ./runs unless TUNEFLEET_RUNS or --run-dir says otherwise.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from controller.errors import UserError

DEFAULT_ROOT = os.environ.get("TUNEFLEET_RUNS", "runs")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees half a file: temp file, fsync, rename."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so a reader never sees half of it: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._trials: TextIO | None = None

    @classmethod
    def create(cls, workload: str, run_dir: str | os.PathLike | None = None,
               root: str = DEFAULT_ROOT) -> RunDir:
        if run_dir is not None:
            path = Path(run_dir)
            if path.exists() and any(path.iterdir()):
                raise UserError(f"--run-dir {path} exists and is not empty; choose another folder")
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path(root) / f"{stamp}-{_slug(workload)}"
            n = 1
            while path.exists():
                n += 1
                path = Path(root) / f"{stamp}-{_slug(workload)}-{n}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create run folder {path}: {e.strerror or e}") from None
        return cls(path)

    def write(self, name: str, data: Any) -> Path:
        p = self.path / name
        write_json_atomic(p, data)
        return p

    def append_trial(self, record: dict) -> None:
        """One JSON line per evaluation, flushed at once: a crash loses nothing already measured."""
        line = json.dumps(record, sort_keys=False, default=str) + "\n"
        with self._lock:
            if self._trials is None:
                self._trials = open(self.path / "trials.jsonl", "a", buffering=1)
            self._trials.write(line)
            self._trials.flush()

    def trials(self) -> list[dict]:
        p = self.path / "trials.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def repair_trials(self) -> int:
        """Cut trials.jsonl back to its last complete line; returns how many bytes went.

        A controller killed (SIGKILL) in the middle of an append leaves a partial last line: the
        evaluation it was writing is lost like one in flight, and the next append must start on
        a line of its own."""
        p = self.path / "trials.jsonl"
        if not p.exists():
            return 0
        data = p.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep == len(data):
            return 0
        with open(p, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
        return len(data) - keep

    @property
    def checkpoints(self) -> Path:
        p = self.path / "ppo"
        p.mkdir(exist_ok=True)
        return p

    def close(self) -> None:
        with self._lock:
            if self._trials is not None:
                self._trials.close()
                self._trials = None
