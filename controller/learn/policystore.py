"""The policy store: every PPO run leaves its trained policy here, and a later run on the same knobs
starts from it instead of from nothing.

An embedded folder (default ~/.local/share/tunefleet/policies, or $TUNEFLEET_POLICY_STORE) holding
the saved policies (``<id>.zip``, stable-baselines3's format) and ``index.json``, one entry each:

    {"id", "file", "knobs": "<signature>", "knob_set": [...], "workload", "kernel_family",
     "observation", "action", "created", "evaluations", "run_dir"}

A policy is compatible when it was trained on the same knob set: the same names, ranges, scales
and choices in the same order (the observation's length follows from it, since the metric feature
vector has one fixed length). Among compatible policies, one from the same workload and kernel
family (kernel release major.minor, from the hosts' hello) is preferred, then the newest.
The index is rewritten atomically (temp file + rename); no server, no lock beyond that.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import SpecError

if TYPE_CHECKING:
    from controller.spec import TuningSpec

INDEX = "index.json"


def default_root() -> Path:
    env = os.environ.get("TUNEFLEET_POLICY_STORE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tunefleet" / "policies"


def knob_set(spec: TuningSpec) -> list[dict]:
    """What a policy's actions mean: each knob's name, range, scale and choices, in order."""
    out = []
    for k in spec.action_space:
        out.append({"param": k.param, "min": k.min, "max": k.max, "scale": k.scale, "values": k.values})
    return out


def knob_signature(spec: TuningSpec) -> str:
    text = json.dumps(knob_set(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kernel_family(facts: dict | None) -> str:
    """'6.18' from a kernel release such as '6.18.0-1-amd64'; '' when unknown."""
    release = str((facts or {}).get("kernel") or "")
    parts = release.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0].isdigit() else ""


def fleet_kernel_family(facts_by_host: dict[str, dict]) -> str:
    """The fleet's kernel family; several families are listed sorted, joined by '+'."""
    return "+".join(sorted({kernel_family(f) for f in facts_by_host.values()} - {""}))


@dataclass
class Entry:
    id: str
    file: str
    knobs: str
    workload: str
    kernel_family: str
    created: float
    data: dict

    def path(self, root: Path) -> Path:
        return root / self.file

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{self.id} ({self.workload}, kernel {self.kernel_family or '?'}, saved {when})"


class PolicyStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    def entries(self) -> list[Entry]:
        try:
            raw = json.loads((self.root / INDEX).read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise SpecError(f"policy store {self.root}: {INDEX} cannot be read: {e}") from None
        out = []
        for item in raw.get("policies", []):
            entry = Entry(item["id"], item["file"], item["knobs"], item.get("workload", ""),
                          item.get("kernel_family", ""), float(item.get("created", 0)), item)
            if (self.root / entry.file).exists():
                out.append(entry)
        return out

    def find(self, spec: TuningSpec, kernel: str, action_mode: str = "config") -> Entry | None:
        """The best compatible policy for this spec, kernel family and action mode (training_config
        ``action``; policies indexed before it existed act with whole configurations), or None."""
        sig = knob_signature(spec)
        compatible = [e for e in self.entries()
                      if e.knobs == sig and e.data.get("action_mode", "config") == action_mode]
        if not compatible:
            return None
        return max(compatible, key=lambda e: (e.workload == spec.workload_name, e.kernel_family == kernel, e.created))

    def new_path(self) -> Path:
        """Where the next policy is saved before `add` indexes it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.zip"

    def add(self, path: Path, spec: TuningSpec, kernel: str, **extra) -> Entry:
        """Index a saved policy (a file inside the store)."""
        path = Path(path)
        item = {"id": path.stem, "file": path.name, "knobs": knob_signature(spec), "knob_set": knob_set(spec),
                "workload": spec.workload_name, "kernel_family": kernel, "created": time.time(), **extra}
        items = [e.data for e in self.entries()] + [item]
        tmp = self.root / f".{INDEX}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps({"policies": items}, indent=1))
        os.replace(tmp, self.root / INDEX)
        return Entry(item["id"], item["file"], item["knobs"], item["workload"], kernel, item["created"], item)
