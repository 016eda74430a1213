"""The shipped expert profiles against their real sources.

TuneD itself is the oracle for the TuneD profiles: Debian's package (tuned 2.20.0-1, `make setup`
installs it) brings both the profile files (/usr/lib/tuned/NAME/tuned.conf) and TuneD's loader
(include chains, unit merging, later wins). A script run by the system python3 loads each profile
with that loader and prints its units, with every [sysctl] value unquoted and expanded the way
TuneD's sysctl plugin does before writing it. TuneD functions are stubbed out there so that
loading a profile runs no program on this machine (cpu-partitioning's would create folders).

The quotes in `why` are checked against the files they quote, where a Debian package installs them.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from controller import profiles
from controller.profiles import shipped, tunedconf

TUNED_DIR = Path("/usr/lib/tuned")
SYSTEM_PYTHON = "/usr/bin/python3"

ORACLE = r"""
import json, sys
from tuned.profiles.functions import functions
functions.Functions.expand = lambda self, s: s   # never run TuneD functions here
from tuned.profiles.factory import Factory
from tuned.profiles.loader import Loader
from tuned.profiles.locator import Locator
from tuned.profiles.merger import Merger
from tuned.profiles.variables import Variables
from tuned.utils.commands import commands

cmd = commands()
out = {}
for name in sys.argv[2:]:
    variables = Variables()
    try:
        profile = Loader(Locator([sys.argv[1]]), Factory(), Merger(), None, variables).load([name])
    except Exception as e:
        out[name] = {"error": str(e)}
        continue
    units = []
    for uname, u in profile.units.items():
        opts = {k: " ".join(v) if isinstance(v, list) else v for k, v in u.options.items()}
        if u.type == "sysctl":  # what plugin_sysctl writes: unquoted, variables expanded
            opts = {k: variables.expand(cmd.unquote(v)) for k, v in opts.items()}
        units.append({"name": uname, "type": u.type, "enabled": u.enabled, "options": opts,
                      "conditions": {k: getattr(u, k) for k in ("uname_regex", "cpuinfo_regex",
                                     "devices_udev_regex") if getattr(u, k) is not None}})
    out[name] = {"summary": profile.options.get("summary", ""), "units": units}
print(json.dumps(out))
"""


def _need_tuned():
    if not (TUNED_DIR / "throughput-performance" / "tuned.conf").is_file():
        if os.environ.get("CI"):
            pytest.fail("TuneD's profiles are missing: `make setup` installs the Debian package tuned")
        pytest.skip("TuneD is not installed (apt-get install --no-install-recommends tuned)")


def tuned_oracle(names: list[str]) -> dict:
    _need_tuned()
    p = subprocess.run([SYSTEM_PYTHON, "-c", ORACLE, str(TUNED_DIR), *names], capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def canonical(text: str) -> str:
    return " ".join(text.split())


def differences(profile, oracle: dict) -> list[str]:
    """Where a Profile says something else than TuneD's loader; [] when they agree."""
    out = []
    active = [u for u in oracle["units"] if u["enabled"]]
    plain = [u for u in active if u["type"] == "sysctl" and not u["conditions"]]
    want = [(k, canonical(v)) for u in plain for k, v in u["options"].items()]
    got = [(k, profile.written(k)) for k in profile.values]
    if got != want:
        out.append(f"{profile.name}: sysctl values {got} != TuneD's {want}")
    conditional = [{"unit": u["name"], "values": {k: canonical(v) for k, v in u["options"].items()}}
                   for u in active if u["type"] == "sysctl" and u["conditions"]]
    mine = [{"unit": c["unit"], "values": c["values"]} for c in profile.conditional]
    if mine != conditional:
        out.append(f"{profile.name}: conditional sysctls {mine} != TuneD's {conditional}")
    rest = {f"[{u['name']}] {k}": v for u in active if u["type"] != "sysctl" for k, v in u["options"].items()}
    shown = {k: v.split("  (only where ")[0] for k, v in profile.not_sysctl.items()}
    if shown != rest:
        out.append(f"{profile.name}: settings besides sysctls {shown} != TuneD's {rest}")
    if profile.summary != oracle["summary"]:
        out.append(f"{profile.name}: summary {profile.summary!r} != TuneD's {oracle['summary']!r}")
    return out


def shipped_tuned() -> list[str]:
    return [n.removeprefix("tuned:") for n in profiles.names() if n.startswith("tuned:")]


def test_every_shipped_tuned_profile_is_what_tuned_loads_from_the_installed_files():
    names = shipped_tuned()
    assert {"throughput-performance", "network-throughput", "latency-performance", "network-latency"} <= set(names)
    oracle = tuned_oracle(names)
    problems = [d for n in names for d in differences(profiles.get(f"tuned:{n}"), oracle[n])]
    assert problems == []
    # includes really were resolved: values that only the included profile sets are there
    assert profiles.get("tuned:network-throughput").values["vm.dirty_ratio"] == "40"
    assert profiles.get("tuned:network-latency").values["vm.dirty_background_ratio"] == "3"


def test_the_comparison_sees_one_changed_shipped_value(monkeypatch):
    """A shipped value edited by hand (a typo, a version bump without a re-read) must be caught."""
    data = copy.deepcopy(shipped.tuned_data())
    data["profiles"]["throughput-performance"]["sections"]["sysctl"]["vm.swappiness"] = "11"
    monkeypatch.setattr(shipped, "tuned_data", lambda: data)
    shipped.profiles.cache_clear()
    try:
        oracle = tuned_oracle(["throughput-performance", "network-throughput"])
        for name in ("throughput-performance", "network-throughput"):  # the include carries it too
            found = differences(profiles.get(f"tuned:{name}"), oracle[name])
            assert len(found) == 1 and "'vm.swappiness', '11'" in found[0]
    finally:
        shipped.profiles.cache_clear()


def test_tunefleet_reads_every_installed_tuned_profile_as_tuned_does_or_says_why_not():
    """The reader behind --profile-file, on all of Debian's profiles (realtime, sap-hana, openshift...)."""
    _need_tuned()
    names = sorted(d.name for d in TUNED_DIR.iterdir() if (d / "tuned.conf").is_file())
    oracle = tuned_oracle(names)

    def lookup(name):
        f = TUNED_DIR / os.path.basename(name) / "tuned.conf"
        return tunedconf.parse(f.read_text(), str(f)) if f.is_file() else None

    refused = {}
    for name in names:
        try:
            p = shipped.tuned_profile(name, lookup, name, "", "", label=lambda n: n)
        except tunedconf.ProfileError as e:
            refused[name] = str(e)
            # only what TuneD evaluates on the host: an include or a value it could not load here
            assert "error" in oracle[name] or any("${" in v for u in oracle[name]["units"] if u["type"] == "sysctl"
                                                  for v in u["options"].values()), (name, e)
            continue
        assert differences(p, oracle[name]) == [], name
    assert len(refused) < len(names) / 4, refused
    assert all("include=${f:virt_check" in e for e in refused.values()), refused


def _words(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def _comments(path: Path) -> str:
    return _words(" ".join(line.strip().lstrip("#") for line in path.read_text().splitlines()
                           if line.strip().startswith("#")))


def test_every_tuned_why_is_a_comment_of_the_file_that_sets_the_value():
    _need_tuned()
    checked = 0
    for name in profiles.names():
        p = profiles.get(name)
        if not name.startswith("tuned:"):
            continue
        for sysctl, quote in p.why.items():
            origin = p.origin[sysctl].removeprefix("tuned:")
            assert _words(quote) in _comments(TUNED_DIR / origin / "tuned.conf"), (name, sysctl)
            checked += 1
    assert checked >= 15


def test_every_documentation_why_quotes_its_reference():
    """Quotes from files a Debian package installs (PostgreSQL's documentation, redis.conf) are
    looked up there; the Redis administration page is not packaged and is cited by commit."""
    import yaml

    data = yaml.safe_load((Path(profiles.__file__).parent / "servers.yaml").read_text())
    checked, unpackaged = 0, 0
    for name, entry in data["profiles"].items():
        refs = entry["references"]
        for group in ("sysctl", "not_sysctl", "unset"):
            for key, item in (entry.get(group) or {}).items():
                assert item.get("why") and item.get("from") in refs, (name, key)
                file = refs[item["from"]].get("file")
                if not file:
                    unpackaged += 1
                    assert "commit" in refs[item["from"]]["version"]
                    continue
                if not Path(file).is_file():
                    if os.environ.get("CI") and file.startswith("/usr/share/doc/postgresql-doc"):
                        pytest.fail(f"{file} is missing: `make setup` installs postgresql-doc-15")
                    continue
                text = Path(file).read_text()
                if file.endswith(".html"):
                    text = html.unescape(re.sub(r"<[^>]+>", "", text))
                else:
                    text = " ".join(line.lstrip("#") for line in text.splitlines())
                assert _words(item["why"]) in _words(text), (name, key)
                checked += 1
    if checked == 0:
        pytest.skip("neither postgresql-doc-15 nor redis-server is installed")
    assert unpackaged > 0
