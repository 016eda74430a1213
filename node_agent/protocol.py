"""The controller <-> agent wire protocol, defined once and imported by both ends.

Newline-delimited JSON over the agent's stdin/stdout (logs go to stderr only).

    request   {"id": 7, "op": "apply", "args": {...}}
    reply     {"id": 7, "ok": true, "result": {...}}
              {"id": 7, "ok": false, "error": {"type": "...", "message": "..."}}
    event     {"event": "sample", "id": 7, "data": {...}}   (while request 7 runs)

The first exchange is always ``hello``. Stdlib only, Python >= 3.7.
"""

import json
import re

PROTOCOL_VERSION = 1

# Operations the agent answers.
OPS = ("hello", "ping", "describe", "read", "watch", "scan", "apply", "restore", "sample", "run", "on_exit",
       "persist", "unpersist", "link_up", "link_down", "bye")

# Error types carried in a failed reply.
E_BAD_REQUEST = "BadRequest"      # malformed message or arguments
E_UNKNOWN_OP = "UnknownOp"
E_VALIDATION = "ValidationError"  # a sysctl name or value the agent refuses to write
E_OS = "OSError"                  # the kernel or the file system said no
E_TIMEOUT = "Timeout"
E_DRIFT = "Drift"                 # someone else changed a knob tunefleet tunes: the request did nothing
E_INTERNAL = "InternalError"

# A plain sysctl name: dotted words, no path separators, no shell characters.
# Interface names inside a name may contain '-' (net.ipv4.conf.veth-a.rp_filter).
SYSCTL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_][A-Za-z0-9_\-]*)+\Z")  # \Z: no trailing newline
MAX_LINE = 16 * 1024 * 1024

# The controller's dead-man heartbeat: a line with no id and no reply. Any line from the
# controller proves it is alive; this one is sent every few seconds when nothing else is.
HEARTBEAT = {"event": "heartbeat"}


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


def is_sysctl_name(name: object) -> bool:
    return isinstance(name, str) and len(name) < 256 and bool(SYSCTL_NAME_RE.match(name))


def sysctl_path(name, root="/proc/sys"):
    """``net.core.somaxconn`` -> ``/proc/sys/net/core/somaxconn``; refuses anything else."""
    if not is_sysctl_name(name):
        raise ValueError("not a plain sysctl name: %r" % (name,))
    return root + "/" + name.replace(".", "/")


def normalize_value(value: object) -> str:
    """Canonical text of a sysctl value: words separated by one space.

    ``4096\t87380\t6291456`` (how the kernel prints vectors) and ``[4096, 87380, 6291456]``
    both become ``"4096 87380 6291456"``; ``12`` becomes ``"12"``.
    """
    if isinstance(value, bool):
        raise ValueError("a sysctl value cannot be a boolean")
    if isinstance(value, (list, tuple)):
        return " ".join(normalize_value(v) for v in value)
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and +-Infinity, which JSON readers accept
            raise ValueError("a sysctl value must be an integer or text, got %r" % (value,))
        value = int(value)
    return " ".join(str(value).split())


def encode(message):
    """One message -> one UTF-8 line (bytes, newline-terminated)."""
    return (json.dumps(message, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")


def decode(line):
    """One line (bytes or str) -> a message dict; raises ProtocolError."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("line is not UTF-8: %s" % e) from None
    line = line.strip()
    if not line:
        raise ProtocolError("empty line")
    try:
        message = json.loads(line)
    except ValueError as e:
        raise ProtocolError("line is not JSON: %s" % e) from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


def request(rid, op, args=None):
    return {"id": rid, "op": op, "args": args or {}}


def reply(rid, result):
    return {"id": rid, "ok": True, "result": result}


def failure(rid, etype, message):
    return {"id": rid, "ok": False, "error": {"type": etype, "message": str(message)}}


def event(rid, name, data):
    return {"event": name, "id": rid, "data": data}


def check_request(message):
    """Validate a decoded request; returns (id, op, args) or raises ProtocolError."""
    rid = message.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ProtocolError("request id must be an integer")
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError("request op must be a string")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("request args must be an object")
    return rid, op, args
