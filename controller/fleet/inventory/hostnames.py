"""Host keys as Ansible reads them: `name:port`, `[v6::addr]:port` and ranges such as `web[01:03]`.

Mirrors ansible.parsing.utils.addresses.parse_address and
ansible.plugins.inventory.expand_hostname_range, which both the INI and the YAML readers use.
"""

from __future__ import annotations

import re
import string

from controller.errors import InventoryError

_RANGE = r"\[[^\]]*\]"
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:(\d+)$")
_HOSTPORT = re.compile(rf"^((?:[^:\[\]]|{_RANGE})+):(\d+)$")


def split_port(pattern: str) -> tuple[str, int | None]:
    """'web1:2222' -> ('web1', 2222); '[2001:db8::1]:22' -> ('2001:db8::1', 22); IPv6 alone has no port."""
    for regex in (_BRACKETED_HOSTPORT, _HOSTPORT):
        m = regex.match(pattern)
        if m:
            return m.group(1), int(m.group(2))
    return pattern, None


def expand(pattern: str) -> list[str]:
    """'db[01:03]-[a:b]' -> db01-a, db01-b, db02-a, ... (first range outermost, as Ansible does)."""
    if "[" not in pattern:
        return [pattern]
    if "]" not in pattern:
        raise InventoryError(f"host range in '{pattern}' has no closing ']'")
    head, rest = pattern.split("[", 1)
    spec, tail = rest.split("]", 1)
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise InventoryError(f"host range [{spec}] in '{pattern}' must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range [{spec}] in '{pattern}' must give an end")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise InventoryError(f"host range [{spec}] in '{pattern}': step must be a number") from None
    width = len(beg) if beg[0] == "0" and len(beg) > 1 else 0
    if width and len(end) != width:
        raise InventoryError(f"host range [{spec}] in '{pattern}' must give begin and end of equal length")
    letters = string.ascii_letters
    if beg in letters and end in letters and len(beg) == len(end) == 1:
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise InventoryError(f"host range [{spec}] in '{pattern}' must have begin <= end")
        seq = list(letters[i:j + 1:step])
    else:
        try:
            seq = [str(n).zfill(width) for n in range(int(beg), int(end) + 1, step)]
        except ValueError:
            raise InventoryError(f"host range [{spec}] in '{pattern}' must be numbers or single letters") from None
    return [name for s in seq for name in expand(f"{head}{s}{tail}")]


def parse_host_key(key) -> tuple[list[str], int | None]:
    """A host entry of an inventory -> (host names, port given with them)."""
    if not isinstance(key, str):
        raise InventoryError(f"host name {key!r} must be a string (quote numbers)")
    name, port = split_port(key)
    return expand(name), port
