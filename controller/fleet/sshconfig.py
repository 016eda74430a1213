"""A host's SSH options, resolved the way OpenSSH resolves them.

When the `ssh` client is installed, `ssh -G` answers: Include, Match, host patterns, the
system-wide /etc/ssh/ssh_config and command-line precedence then mean exactly what they mean
to ssh. Without it, a built-in reader (paramiko's parser, with Include and the system file
added) covers Host and `Match host/originalhost/all`; anything it cannot resolve exactly is
refused with one line rather than answered differently.

An inventory's port, user and key enter as `-p`, `-l` and `-i` after its extra ssh arguments,
as they would on an ssh command line: the key is added to the config's IdentityFiles, and the
first value obtained wins, as everywhere in ssh.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from controller.errors import UserError
from controller.fleet.inventory import HostSpec

SYSTEM_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa")
INSTALL_HINT = "install openssh-client for exact ssh semantics"


@dataclass(frozen=True)
class SSHOptions:
    """What ssh would use to reach one host (or one jump hop)."""

    alias: str  # the name ssh was given
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    proxy_jump: tuple[str, ...]  # hops in connection order, each "[user@]host[:port]"
    proxy_command: str | None  # tokens expanded
    user_known_hosts: tuple[str, ...]
    global_known_hosts: tuple[str, ...]
    strict_host_key_checking: str  # yes, no, ask or accept-new
    connect_timeout: float | None

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def resolve(spec: HostSpec, config_file: str | None = None) -> SSHOptions:
    """The options for an inventory host: its ssh arguments, then -p/-l/-i, then the config files."""
    args = list(spec.ssh_args)
    if spec.known_hosts:
        args += ["-o", f'UserKnownHostsFile="{_expand_home(spec.known_hosts)}"']
    if spec.port:
        args += ["-p", str(spec.port)]
    if spec.user:
        args += ["-l", spec.user]
    if spec.key:
        key = _expand_home(spec.key)
        if not key.is_file():  # ssh would only warn and go on with other keys
            raise UserError(f"key file {key} does not exist")
        args += ["-i", str(key)]
    return lookup(spec.host, args, config_file)


def resolve_hop(jump: str, config_file: str | None = None) -> SSHOptions:
    """A ProxyJump hop, resolved as ssh resolves it: `ssh [-F file] [-l user] [-p port] host`."""
    user, host, port = parse_jump(jump)
    args = (["-l", user] if user else []) + (["-p", str(port)] if port else [])
    return lookup(host, args, config_file)


def config_file_of(args, config_file: str | None) -> str | None:
    """The -F file that ssh would use: the last one given wins, as in ssh(1)."""
    args = list(args)
    for i, a in enumerate(args):
        if a == "-F" and i + 1 < len(args):
            config_file = args[i + 1]
        elif a.startswith("-F") and len(a) > 2:
            config_file = a[2:]
    return config_file


def lookup(host: str, args: list[str], config_file: str | None = None) -> SSHOptions:
    head = ["-F", os.path.expanduser(config_file)] if config_file else []
    ssh = shutil.which("ssh")
    raw = _ssh_g(ssh, host, head + args) if ssh else _builtin(host, head + args)
    return _options(host, raw)


def parse_jump(jump: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` or `ssh://[user@]host[:port]`, with [v6] addresses."""
    text = jump[len("ssh://"):] if jump.startswith("ssh://") else jump
    user, at, rest = text.rpartition("@")
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest)
    if not m or not rest:
        raise UserError(f"ProxyJump hop {jump!r} is not [user@]host[:port]")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return (user if at else None), host, (int(port) if port else None)


# --------------------------------------------------------------------------- ssh -G


def _ssh_g(ssh: str, host: str, args: list[str]) -> dict:
    try:
        p = subprocess.run([ssh, "-G", *args, "--", host], capture_output=True, text=True, timeout=15,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"ssh -G {host} did not answer within 15 s (a Match exec in the ssh config?)") from None
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        raise UserError(f"ssh -G {host}: {lines[-1] if lines else f'exit status {p.returncode}'}")
    raw: dict = {"identityfile": []}
    for line in p.stdout.splitlines():
        key, _, value = line.partition(" ")
        key = key.lower()
        if key == "identityfile":
            raw[key].append(value)
        else:
            raw[key] = value
    return raw


# --------------------------------------------------------------------------- built-in reader

_CLI_KEYS = {"-p": "Port", "-l": "User", "-i": "IdentityFile", "-J": "ProxyJump"}
_MATCH_OK = {"all", "host", "originalhost"}


def _builtin(host: str, args: list[str]) -> dict:
    """Resolve without the ssh client: command-line options become leading lines (first value
    wins, as ssh's command line does), then the user (or -F) file, then the system file."""
    import paramiko

    lines, config_file, i = [], None, 0
    while i < len(args):
        a = args[i]
        flag, value = (a[:2], a[2:]) if len(a) > 2 and a[:2] in ("-o", "-F", *_CLI_KEYS) else (a, None)
        if flag not in ("-o", "-F", *_CLI_KEYS):
            raise UserError(f"ssh argument {a!r} is not understood by the built-in ssh config reader ({INSTALL_HINT})")
        if value is None:
            if i + 1 >= len(args):
                raise UserError(f"ssh argument {a} needs a value")
            value, i = args[i + 1], i + 1
        i += 1
        if flag == "-F":
            config_file = value
        elif flag == "-o":
            lines.append(value)
        else:
            lines.append(f"{_CLI_KEYS[flag]} {value}")
    # ssh finds the user file in the account's home, but expands Include patterns with glob(3),
    # whose ~ is $HOME: relative ones are taken as "~/.ssh/<pattern>".
    includes = Path(os.path.expanduser("~/.ssh"))
    if config_file:
        text = "\n".join(lines) + "\nHost *\n" + _inline(_expand_home(config_file), includes)
    else:
        text = ("\n".join(lines) + "\nHost *\n" + _inline(_home() / ".ssh" / "config", includes)
                + "\nHost *\n" + _inline(Path(SYSTEM_CONFIG), Path(SYSTEM_CONFIG).parent))
    _refuse_unsupported(text)
    cfg = paramiko.SSHConfig.from_text(text)
    # One pass without paramiko's token expansion (done below, the same way for both readers):
    # ssh evaluates a file once, top to bottom, unless Match final or canonical ask otherwise.
    found = cfg._lookup(hostname=host)
    raw = {k: v for k, v in found.items() if k != "identityfile"}
    if found.get("canonicalizehostname", "no").lower() not in ("no", "false"):
        raise UserError(f"CanonicalizeHostname applies to {host}: {INSTALL_HINT}")
    if raw.get("proxycommand") and "proxyjump" in raw:
        raise UserError(f"both ProxyJump and ProxyCommand apply to {host}: {INSTALL_HINT}")
    if "proxycommand" in raw and raw["proxycommand"] is None:
        raw["proxycommand"] = "none"
    raw["identityfile"] = list(found.get("identityfile", [])) or [f"~/.ssh/{n}" for n in DEFAULT_IDENTITIES]
    raw.setdefault("hostname", host)
    raw["hostname"] = _expand_tokens(raw["hostname"], {"h": host}, "HostName")
    raw.setdefault("user", _local_user())
    raw.setdefault("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2")
    raw.setdefault("globalknownhostsfile", "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2")
    raw.setdefault("stricthostkeychecking", "ask")
    return raw


def _inline(path: Path, base: Path, depth: int = 0) -> str:
    """A config file with its Include lines replaced by the included files. After each
    inclusion the enclosing Host/Match line is repeated, so what follows keeps its condition."""
    if depth > 16:
        raise UserError(f"{path}: Include nested too deeply")
    if not path.is_file():
        return ""
    out, header = [], "Host *"
    for line in path.read_text().splitlines():
        words = line.strip().replace("=", " ", 1).split(None, 1)
        key = words[0].lower() if words else ""
        if key in ("host", "match"):
            header = line.strip()
        if key != "include" or len(words) < 2:
            out.append(line)
            continue
        for pattern in shlex.split(words[1]):
            pattern = os.path.expanduser(pattern)
            full = pattern if os.path.isabs(pattern) else str(base / pattern)
            for f in sorted(glob.glob(full)):
                out.append(_inline(Path(f), base, depth + 1))
        out.append(header)
    return "\n".join(out) + "\n"


def _refuse_unsupported(text: str) -> None:
    """Match criteria other than all/host/originalhost need ssh's own evaluation."""
    for line in text.splitlines():
        words = line.strip().replace("=", " ", 1).split()
        if not words or words[0].lower() != "match":
            continue
        i = 1
        while i < len(words):
            crit = words[i].lstrip("!").lower()
            if crit not in _MATCH_OK:
                raise UserError(f"'Match {crit}' in the ssh config: {INSTALL_HINT}")
            i += 1 if crit == "all" else 2


# --------------------------------------------------------------------------- both readers


def _options(alias: str, raw: dict) -> SSHOptions:
    if raw.get("hostkeyalias"):
        raise UserError(f"{alias}: HostKeyAlias is not supported; list the host's key under its address instead")
    hostname, port, user = raw["hostname"], int(raw.get("port", 22)), raw["user"]
    tokens = {"h": hostname, "p": str(port), "r": user, "n": alias, "u": _local_user(), "d": str(_home()),
              "i": str(os.getuid()), "l": socket.gethostname(), "L": socket.gethostname().split(".")[0]}
    jump = raw.get("proxyjump", "none")
    command = raw.get("proxycommand", "none")
    timeout = raw.get("connecttimeout", "none")
    return SSHOptions(
        alias=alias, hostname=hostname, port=port, user=user,
        identity_files=tuple(str(_expand_home(_expand_tokens(f, tokens, "IdentityFile"))) for f in raw["identityfile"]),
        identities_only=raw.get("identitiesonly", "no").lower() in ("yes", "true"),
        proxy_jump=() if jump.lower() == "none" else tuple(h.strip() for h in jump.split(",") if h.strip()),
        proxy_command=None if command.lower() == "none" else _expand_tokens(
            command, {k: tokens[k] for k in "hnpr"}, "ProxyCommand"),
        user_known_hosts=tuple(str(_expand_home(f)) for f in raw["userknownhostsfile"].split()),
        global_known_hosts=tuple(str(_expand_home(f)) for f in raw["globalknownhostsfile"].split()),
        strict_host_key_checking={"true": "yes", "false": "no", "off": "no", "on": "yes"}.get(
            raw.get("stricthostkeychecking", "ask").lower(), raw.get("stricthostkeychecking", "ask").lower()),
        connect_timeout=None if str(timeout).lower() == "none" else float(timeout),
    )


def _expand_tokens(value: str, tokens: dict[str, str], what: str) -> str:
    def one(m: re.Match) -> str:
        t = m.group(1)
        if t == "%":
            return "%"
        if t not in tokens:
            raise UserError(f"{what} {value!r}: token %{t} is not supported")
        return tokens[t]

    return re.sub(r"%(.)", one, value)


def _home() -> Path:
    """ssh's home: the account's, from the password database (ssh ignores $HOME)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def _local_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _expand_home(path: str) -> Path:
    if path == "~" or path.startswith("~/"):
        return _home() / path[2:]
    return Path(path)
