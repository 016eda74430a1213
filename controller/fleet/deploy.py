"""Ship the agent: build a zipapp from the installed node_agent package, upload it once per
content hash, and start it with the host's system python3 (through `sudo -n` when needed)."""

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

    Exits EXIT_NO_PAYLOAD when this payload is not uploaded yet, EXIT_NO_PYTHON without python3.
    The system interpreter is preferred: shims (pyenv) cost ~70 ms per start and may be a
    different Python from the one sudoers allows.
    """
    find_python = (
        f"PY={shlex.quote(python)}" if python else
        'PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3) '
        f'|| {{ echo "tunefleet: python3 not found on this host" >&2; exit {EXIT_NO_PYTHON}; }}'
    )
    runner = "sudo -n " if sudo else ""
    return (
        f'D="{STATE_DIR}"; P="$D/{payload.filename}"; {find_python}; '
        f'[ -f "$P" ] || exit {EXIT_NO_PAYLOAD}; '
        f'exec {runner}"$PY" -I "$P" --state "$D" --idle-timeout {idle_timeout:g} '
        f'--heartbeat-timeout {heartbeat_timeout:g}'
    )


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
