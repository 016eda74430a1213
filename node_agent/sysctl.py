"""Read, describe, check and write kernel settings straight through their /proc/sys files.

No shell and no ``sysctl`` binary: a name is checked against ``protocol.SYSCTL_NAME_RE``, mapped
to its file, and the value is written with one ``write(2)``. The kernel's refusal comes back as an
``errno`` the controller can act on. Stdlib only, Python >= 3.7.
"""

import errno as errno_mod
import os

from node_agent import denylist, protocol

PROC_SYS = "/proc/sys"

# Pairs where writing one makes the kernel zero the other (only one of them is in force).
# Writing 0 back to the idle one is refused (EINVAL): restore the one that was in force.
COUPLED = {
    "vm.dirty_bytes": "vm.dirty_ratio", "vm.dirty_ratio": "vm.dirty_bytes",
    "vm.dirty_background_bytes": "vm.dirty_background_ratio",
    "vm.dirty_background_ratio": "vm.dirty_background_bytes",
}


class Refused(Exception):
    """A knob that is not written: a failed check (errno None) or the kernel said no."""

    def __init__(self, name, etype, message, errno=None):
        Exception.__init__(self, message)
        self.name = name
        self.etype = etype
        self.errno = errno
        self.message = message

    def as_dict(self):
        return {"type": self.etype, "errno": self.errno, "message": self.message}


def _invalid(name, message):
    return Refused(name, protocol.E_VALIDATION, "%s: %s" % (name, message))


def _os_refusal(name, action, err):
    code = err.errno
    reason = os.strerror(code) if code else str(err)
    label = errno_mod.errorcode.get(code, "error")
    return Refused(name, protocol.E_OS, "%s %s: %s (%s)" % (action, name, reason, label), code)


def path_of(name, root=PROC_SYS):
    """The /proc/sys file of a plain sysctl name; refuses anything else."""
    try:
        return protocol.sysctl_path(name, root)
    except ValueError:
        raise _invalid(str(name)[:80], "not a plain sysctl name") from None


def check_allowed(name):
    """Refuse a knob on the deny-list (node_agent/denylist.py): no request can enable it."""
    message = denylist.refusal(name)
    if message is not None:
        raise Refused(name, protocol.E_VALIDATION, message)


def exists(name, root=PROC_SYS):
    return os.path.isfile(path_of(name, root))


def read(name, root=PROC_SYS):
    """Current value in canonical text form; raises Refused (validation or OSError)."""
    path = path_of(name, root)
    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: no buffer to allocate per read
            raw = f.readall()
    except OSError as e:
        raise _os_refusal(name, "reading", e) from None
    return protocol.normalize_value(raw.decode("utf-8", "replace"))


def describe(name, root=PROC_SYS):
    """``{"exists", "value", "writable"}``; an unreadable knob has value None."""
    try:
        path = path_of(name, root)
    except Refused as e:
        return {"exists": False, "value": None, "writable": False, "error": e.message}
    if not os.path.isfile(path):
        return {"exists": False, "value": None, "writable": False}
    try:
        value = read(name, root)
    except Refused:
        value = None
    return {"exists": True, "value": value, "writable": os.access(path, os.W_OK)}


def normalize(name, value):
    """The canonical text the kernel will be given; refuses values that cannot be sysctl text."""
    if value is None or isinstance(value, dict):
        raise _invalid(name, "value must be a number, a string or a list, got %r" % (value,))
    if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, dict)) for v in value):
        raise _invalid(name, "a vector value must be flat: %r" % (value,))
    try:
        text = protocol.normalize_value(value)
    except ValueError as e:
        raise _invalid(name, str(e)) from None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _invalid(name, "value contains control characters")
    if len(text) > 4096:
        raise _invalid(name, "value is longer than 4096 characters")
    return text


def _as_int(name, word, what):
    try:
        return int(word)
    except ValueError:
        raise _invalid(name, "%s %r is not an integer" % (what, word)) from None


def _bound_int(name, bound, label):
    if isinstance(bound, bool) or not isinstance(bound, (int, float, str)):
        raise _invalid(name, "%s must be a number or a list of numbers, got %r" % (label, bound))
    if isinstance(bound, float):
        if not bound.is_integer():  # also NaN and +-Infinity
            raise _invalid(name, "%s %r is not an integer" % (label, bound))
        return int(bound)
    return _as_int(name, str(bound).strip(), label)


def _per_component(name, limit, count, label):
    """A scalar bound applies to every component; a list bound gives one per component."""
    if isinstance(limit, (list, tuple)):
        if len(limit) != count:
            raise _invalid(name, "%s has %d components, the value has %d" % (label, len(limit), count))
        return [_bound_int(name, v, label) for v in limit]
    return [_bound_int(name, limit, label)] * count


def check_bounds(name, text, bounds):
    """Refuse ``text`` unless it satisfies ``{"min"?, "max"?, "choices"?}`` (per component)."""
    if not bounds:
        return
    if not isinstance(bounds, dict):
        raise _invalid(name, "bounds must be an object")
    choices = bounds.get("choices")
    if choices is not None:
        if not isinstance(choices, (list, tuple)):
            raise _invalid(name, "choices must be a list")
        try:
            allowed = [protocol.normalize_value(c) for c in choices]
        except ValueError as e:
            raise _invalid(name, "bad choices: %s" % e) from None
        if text not in allowed:
            raise _invalid(name, "%r is not one of %s" % (text, ", ".join(allowed)))
    words = text.split()
    if not words and (bounds.get("min") is not None or bounds.get("max") is not None):
        raise _invalid(name, "an empty value cannot satisfy min/max")
    for key, inside in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
        if bounds.get(key) is None:
            continue
        limits = _per_component(name, bounds[key], len(words), key)
        for i, (word, limit) in enumerate(zip(words, limits)):
            value = _as_int(name, word, "component %d" % (i + 1) if len(words) > 1 else "value")
            if not inside(value, limit):
                where = " (component %d)" % (i + 1) if len(words) > 1 else ""
                raise _invalid(name, "%d is %s the %s %d%s" % (
                    value, "below" if key == "min" else "above", key, limit, where))


def check_shape(name, text, current):
    """A numeric knob gets as many numbers as it holds. A vector (tcp_rmem, ip_local_port_range)
    given fewer: the kernel changes only the first ones without saying so. A scalar given several:
    the kernel writes the first and then answers EINVAL, a refusal that changed the knob."""
    words = current.split()
    if words and all(w.lstrip("-").isdigit() for w in words):
        if len(text.split()) != len(words):
            what = "components" if len(words) > 1 else "number"
            raise _invalid(name, "needs %d %s like %r, got %r" % (len(words), what, current, text))


def write(name, text, root=PROC_SYS):
    """Write ``text`` to the knob's file with a single write(2); raises Refused on refusal.

    Every write passes here (apply, restore, a stale journal), so the deny-list is checked here
    too: a journal edited by hand cannot make the agent write a denied knob either. The file is
    opened without following a symlink.
    """
    path = path_of(name, root)
    check_allowed(name)
    data = (text + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise _os_refusal(name, "opening", e) from None
    try:
        written = os.write(fd, data)
    except OSError as e:
        raise _os_refusal(name, "writing %r to" % text, e) from None
    finally:
        os.close(fd)
    if written != len(data):
        raise Refused(name, protocol.E_OS, "short write to %s (%d of %d bytes)" % (
            name, written, len(data)), errno_mod.EIO)
