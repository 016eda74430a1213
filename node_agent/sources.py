"""Who else sets a knob on this host: sysctl files, the active TuneD profile, tuning daemons.

Read-only. ``scan(names)`` says, per knob, which files of the boot-time sysctl configuration set
it (in the order procps' ``sysctl --system`` applies them, so the last one is the one in force
after a boot), what an active TuneD profile sets, and which running daemon (tuned, bpftune) may
write it again at any time. The order is sysctl's own:

    /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d
        every *.conf, by file name; a name found in an earlier folder hides the same name in a
        later one (so /etc/sysctl.d/x.conf masks /usr/lib/sysctl.d/x.conf)
    /etc/sysctl.conf, last of all

TuneD applies its profile after that, and then (``reapply_sysctl = 1`` in tuned-main.conf, the
default) applies /run/sysctl.d, /etc/sysctl.d and /etc/sysctl.conf again over its own values: a
knob set there wins over the profile, one set only under /usr/lib does not.

This module imports nothing but the standard library and nothing of the agent, so `tunefleet
audit` can run it on a host as the SSH user with ``python3 -`` (its source on stdin, a JSON
document on stdout): it leaves no file, starts no agent and writes no setting. Python >= 3.7.
"""

import configparser
import fnmatch
import json
import os
import re
import sys

# The first two are the ones TuneD applies again over its profile (then sysctl.conf).
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
TUNED_DIRS = ("/etc/tuned", "/usr/lib/tuned")          # a profile in /etc/tuned hides the packaged one
TUNED_ACTIVE = "/etc/tuned/active_profile"
TUNED_MAIN = "/etc/tuned/tuned-main.conf"
# The knobs bpftune's tuners declare as theirs (the BPFTUNABLE_SYSCTL entries of its src/*_tuner.c).
BPFTUNE_KNOBS = ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans",
                 "net.core.netdev_max_backlog", "net.core.flow_limit_cpu_bitmap", "net.core.netdev_budget",
                 "net.core.netdev_budget_usecs", "net.ipv4.ipfrag_high_thresh", "net.ipv6.ip6frag_high_thresh",
                 "net.ipv4.tcp_allowed_congestion_control", "net.ipv6.route.max_size",
                 "net.core.rmem_max", "net.core.rmem_default")
DAEMONS = ("tuned", "bpftune")
_TUNED_OPTIONS = ("type", "devices", "devices_udev_regex", "uname_regex", "cpuinfo_regex", "enabled", "replace",
                  "drop", "script_pre", "script_post", "priority")


def _norm(value):
    return " ".join(str(value).split())


def _key(raw):
    """A key as sysctl reads it: ``net/core/somaxconn`` means ``net.core.somaxconn``."""
    key = raw.strip()
    if "/" in key:
        key = key.replace(".", "\0").replace("/", ".").replace("\0", "/")
    return key


def sysctl_files(dirs=SYSCTL_DIRS, conf=SYSCTL_CONF):
    """The files ``sysctl --system`` reads, in the order it applies them."""
    chosen = {}
    for folder in dirs:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(folder, name)
    ordered = [chosen[n] for n in sorted(chosen)]
    if os.path.isfile(conf):
        ordered.append(conf)
    return ordered


def parse_sysctl_file(path):
    """``[(key, value, line number)]`` of one sysctl.d file (``-key = v``: failure ignored)."""
    out: list = []
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = _key(key.lstrip("-"))
        if key:
            out.append((key, _norm(value), number))
    return out


def _matches(pattern, name):
    return pattern == name or (any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern))


def file_settings(names, files, replaced=None):
    """name -> [{"path", "value", "line"}] in the order the files are applied (the last wins).
    ``replaced``: {path: [(key, value, line)]} read instead of that file (one about to be written)."""
    found = dict((n, []) for n in names)
    for path in files:
        lines = replaced[path] if replaced and path in replaced else parse_sysctl_file(path)
        for key, value, number in lines:
            for name in names:
                if _matches(key, name):
                    found[name].append({"path": path, "value": value, "line": number})
    return found


# -- TuneD ---------------------------------------------------------------------------------------
def _tuned_conf(name, dirs=TUNED_DIRS):
    for folder in dirs:
        path = os.path.join(folder, name, "tuned.conf")
        if os.path.isfile(path):
            return path
    return None


def _read_ini(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",),
                                       comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # sysctl names keep their case
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    return parser


def _section_applies(section):
    """A section limited to some machines (uname_regex, cpuinfo_regex) applies only on them."""
    uname = section.get("uname_regex")
    if uname and not re.search(uname, " ".join(os.uname())):
        return False
    cpu = section.get("cpuinfo_regex")
    if cpu:
        try:
            with open("/proc/cpuinfo") as f:
                if not re.search(cpu, f.read()):
                    return False
        except (OSError, re.error):
            return False
    return True


def tuned_profile(name, dirs=TUNED_DIRS, _seen=None):
    """The [sysctl] settings of a TuneD profile, its includes first: {key: {"value", "profile", "path"}}.
    A value keeps TuneD's own modifiers (``>2048``: only raised to it). Unknown profiles give {}."""
    seen = _seen if _seen is not None else set()
    if name in seen:
        return {}
    seen.add(name)
    path = _tuned_conf(name, dirs)
    parser = _read_ini(path) if path else None
    if parser is None:
        return {}
    settings = {}
    if parser.has_section("main"):
        for included in re.split(r"[\s,]+", parser.get("main", "include", fallback="").strip()):
            if included:
                settings.update(tuned_profile(included, dirs, seen))
    for section in parser.sections():
        options = parser[section]
        if (section != "sysctl" and options.get("type") != "sysctl") or not _section_applies(options):
            continue
        for key, value in options.items():
            if key in _TUNED_OPTIONS:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            settings[_key(key)] = {"value": _norm(value), "profile": name, "path": path}
    return settings


def tuned_state(active_file=TUNED_ACTIVE, main_conf=TUNED_MAIN):
    """The active TuneD profile(s) (active_profile may name several) and whether TuneD applies the
    sysctl files again over its own values (reapply_sysctl)."""
    try:
        with open(active_file) as f:
            active = f.read().split()
    except OSError:
        active = []
    reapply = True
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with open(main_conf) as f:
            parser.read_string("[main]\n" + f.read())
        reapply = parser.getboolean("main", "reapply_sysctl", fallback=True)
    except (OSError, configparser.Error, ValueError):
        pass
    return {"active": active, "reapply_sysctl": reapply}


def tuned_settings(profiles, dirs=TUNED_DIRS):
    merged = {}
    for name in profiles:
        merged.update(tuned_profile(name, dirs))
    return merged


# -- daemons -------------------------------------------------------------------------------------
def _netns(proc, pid):
    try:
        return os.readlink(os.path.join(proc, pid, "ns", "net"))
    except OSError:
        return None  # not ours to inspect (another user's process): counted as this host's


def running_daemons(proc="/proc"):
    """{daemon: [pids]} for tuned and bpftune processes on this host (by process name). A daemon
    in another network namespace (a container, another host of a local fleet) tunes that one."""
    found: dict = {}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    mine = _netns(proc, "self")
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm")) as f:
                comm = f.read().strip()
            with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        names = {comm} | set(os.path.basename(a) for a in argv[:2])
        theirs = _netns(proc, pid)
        if mine and theirs and theirs != mine:
            continue
        for daemon in DAEMONS:
            if daemon in names and os.path.basename(argv[0] if argv else "") not in ("tuned-adm",):
                found.setdefault(daemon, []).append(int(pid))
    return found


# -- the scan ------------------------------------------------------------------------------------
def _tuned_winner(files_for_knob, tuned_value, reapply, reapplied, conf):
    """What holds a knob once TuneD has applied its profile (and, with reapply, the files of
    ``reapplied`` folders and ``conf`` again)."""
    if tuned_value is None:
        return None
    if reapply:
        again = [f for f in files_for_knob if f["path"] == conf or os.path.dirname(f["path"]) in reapplied]
        if again:
            return dict(again[-1], by="file")
    return {"path": tuned_value["path"], "value": tuned_value["value"], "by": "tuned",
            "profile": tuned_value["profile"]}


def scan(names, dirs=SYSCTL_DIRS, conf=SYSCTL_CONF, tuned_dirs=TUNED_DIRS, active_file=TUNED_ACTIVE,
         main_conf=TUNED_MAIN, proc="/proc", extra=None):
    """What manages each of ``names`` besides tunefleet. ``extra``: a file that is not there yet
    (a drop-in about to be written, ``{"path", "values"}``), placed where sysctl would read it, so
    the answer says whether it would win at boot."""
    files = sysctl_files(dirs, conf)
    replaced = {}
    if extra:
        files = _with_extra(files, extra["path"], conf)
        replaced[extra["path"]] = [(k, _norm(v), None) for k, v in sorted((extra.get("values") or {}).items())]
    found = file_settings(names, files, replaced)
    state = tuned_state(active_file, main_conf)
    profile = tuned_settings(state["active"], tuned_dirs)
    daemons = running_daemons(proc)
    knobs = {}
    for name in names:
        setters = found[name]
        tuned_value = next((v for k, v in profile.items() if _matches(k, name)), None)
        retuned_by = []
        if "tuned" in daemons and tuned_value is not None:
            retuned_by.append("tuned")
        if "bpftune" in daemons and name in BPFTUNE_KNOBS:
            retuned_by.append("bpftune")
        knobs[name] = {
            "files": setters,
            "boot": setters[-1] if setters else None,
            "tuned": tuned_value,
            "after_tuned": _tuned_winner(setters, tuned_value, state["reapply_sysctl"], dirs[:2], conf),
            "daemons": retuned_by,
        }
    return {"files": files, "tuned": dict(state, settings=profile), "daemons": daemons, "knobs": knobs}


def _with_extra(files, path, conf):
    """The file list with ``path`` where sysctl would place it: by name, hiding a file of the same
    name in a later folder, itself hidden by one in an earlier folder (``/etc/sysctl.conf`` stays last)."""
    base, folder = os.path.basename(path), os.path.dirname(path)
    if path == conf or path in files:
        return files
    same = [f for f in files if f != conf and os.path.basename(f) == base]
    rank = dict((d, i) for i, d in enumerate(SYSCTL_DIRS))
    if same and rank.get(os.path.dirname(same[0]), -1) <= rank.get(folder, len(SYSCTL_DIRS)):
        return files  # an earlier folder's file of that name hides it: it would never be read
    rest = [f for f in files if f != conf and f not in same]
    return sorted(rest + [path], key=os.path.basename) + ([conf] if conf in files else [])


def main(argv):
    """``python3 - NAME...`` (this source on stdin): a scan as JSON, plus each knob's current value.
    ``--profile NAME`` adds that TuneD profile's settings (``active``: the active one)."""
    names, profile = [], None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--profile" and args:
            profile = args.pop(0)
        else:
            names.append(arg)
    state = tuned_state()
    wanted = state["active"] if profile == "active" else [profile] if profile else []
    settings = tuned_settings(wanted)
    names = sorted(set(names) | set(k for k in settings if not any(c in k for c in "*?[")))
    result = scan(names)
    values = {}
    for name in names:
        path = "/proc/sys/" + name.replace(".", "/")
        try:
            with open(path) as f:
                values[name] = _norm(f.read())
        except OSError:
            values[name] = None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    result.update(values=values, profile={"names": wanted, "settings": settings}, boot_id=boot_id,
                  hostname=os.uname()[1])
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
