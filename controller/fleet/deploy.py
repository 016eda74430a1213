"""Ship the agent: build a zipapp from the installed node_agent package and start it with the
host's system python3.

A root SSH user gets the payload uploaded into its own ~/.tunefleet once per content hash. A
non-root user starts the agent through sudo, and sudo may only ever run a file the user cannot
change: the payload installed root-owned at INSTALL_PATH (`tunefleet install`), started by one
exact command with no arguments, so the sudoers rule grants that and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

import node_agent

STATE_DIR = "$HOME/.tunefleet"  # per SSH user; expanded by the host's shell
EXIT_NO_PAYLOAD = 100
EXIT_NOT_INSTALLED = 101
INSTALL_DIR = "/usr/local/lib/tunefleet"
INSTALL_PATH = f"{INSTALL_DIR}/agent.pyz"
SUDO_PYTHON = "/usr/bin/python3"  # the interpreter the sudoers rule names
EXIT_NO_PYTHON = 127

_ZIP_MAIN = b"from node_agent.__main__ import main\nmain()\n"


@dataclass(frozen=True)
class Payload:
    data: bytes
    digest: str  # sha256 of the zip, hex

    @property
    def short(self) -> str:
        return self.digest[:16]

    @property
    def filename(self) -> str:
        return f"agent-{self.short}.pyz"


@functools.lru_cache(maxsize=1)
def build_payload() -> Payload:
    """A deterministic zipapp of node_agent/*.py: the same sources always give the same hash."""
    src = Path(node_agent.__file__).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        entries = [("__main__.py", _ZIP_MAIN)]
        entries += [(f"node_agent/{f.name}", f.read_bytes()) for f in sorted(src.glob("*.py"))]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    data = buf.getvalue()
    return Payload(data, hashlib.sha256(data).hexdigest())


HEARTBEAT_TIMEOUT = 30.0  # an agent that hears nothing from its controller this long restores and exits


def agent_command(payload: Payload, *, sudo: bool, python: str | None = None, idle_timeout: float = 900,
                  heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> str:
    """The shell command that starts the agent on a host, in one exec.

    As root: the uploaded payload; exits EXIT_NO_PAYLOAD when this one is not uploaded yet.
    Through sudo: exactly the command of the sudoers rule (deploy/sudoers.d/tunefleet), with
    no arguments; the timeouts then travel in hello. Exits EXIT_NOT_INSTALLED without an
    installed agent, EXIT_NO_PYTHON without python3. The system interpreter is preferred: shims
    (pyenv) cost ~70 ms per start and may be a different Python from the one sudoers allows.
    """
    if sudo:
        return (f'[ -f {INSTALL_PATH} ] || exit {EXIT_NOT_INSTALLED}; '
                f'exec sudo -n {shlex.quote(python or SUDO_PYTHON)} -I {INSTALL_PATH}')
    find_python = (
        f"PY={shlex.quote(python)}" if python else
        'PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3) '
        f'|| {{ echo "tunefleet: python3 not found on this host" >&2; exit {EXIT_NO_PYTHON}; }}'
    )
    return (
        f'D="{STATE_DIR}"; P="$D/{payload.filename}"; {find_python}; '
        f'[ -f "$P" ] || exit {EXIT_NO_PAYLOAD}; '
        f'exec "$PY" -I "$P" --state "$D" --idle-timeout {idle_timeout:g} '
        f'--heartbeat-timeout {heartbeat_timeout:g}'
    )


def install_command(payload: Payload, *, sudo: str = "") -> str:
    """Install the payload root-owned at INSTALL_PATH from stdin, atomically.

    ``sudo`` prefixes the root part ("" as root, "sudo -n", or "sudo -k -S -p ''" when the
    password comes first on stdin). The copy is checked against the payload's hash after it
    landed in the root-owned folder, so what sudo will run is what this controller built.
    """
    root_part = (
        f'set -e; umask 022; install -d -m 0755 -o root -g root {INSTALL_DIR}; '
        f'chown root:root {INSTALL_DIR}; chmod 0755 {INSTALL_DIR}; '
        f'T=$(mktemp {INSTALL_DIR}/.agent.XXXXXX); cat > "$T"; '
        f'if [ "$(sha256sum < "$T" | cut -d" " -f1)" != {payload.digest} ]; then '
        f'rm -f "$T"; echo "tunefleet: the agent arrived damaged" >&2; exit 1; fi; '
        f'chown root:root "$T"; chmod 0644 "$T"; mv -f "$T" {INSTALL_PATH}'
    )
    return f'{sudo} sh -c {shlex.quote(root_part)}'.strip()


def upload_command(payload: Payload) -> str:
    """Write stdin to the payload path atomically.

    Payloads of other versions stay: another controller may be running one right now. Only
    those untouched for 30 days are removed.
    """
    return (
        f'D="{STATE_DIR}"; umask 077; mkdir -p "$D" && T="$D/.upload.$$" && cat > "$T" && '
        f'mv -f "$T" "$D/{payload.filename}" && '
        f'find "$D" -maxdepth 1 -name "agent-*.pyz" ! -name "{payload.filename}" -mtime +30 -delete'
    )
