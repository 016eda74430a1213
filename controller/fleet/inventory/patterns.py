"""`--limit` with the meaning of Ansible's host patterns (ansible.inventory.manager).

`a,b` / `a:b` union, `a:&b` intersection, `a:!b` exclusion, `~regex`, shell globs, and
subscripts `g[0]`, `g[-1]`, `g[0:2]` (inclusive). Terms apply in Ansible's order: plain terms
first, then `&` terms, then `!` terms; with only `&`/`!` terms the start is `all`. A group name
stands for every host in it or below it; a glob or regex matches group names and host names.
The selected hosts keep inventory order, as `--limit` keeps it in Ansible.

Where Ansible only warns (a term matching nothing), tunefleet stops and says which term, since
tuning the wrong set of machines is worse than not starting.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from typing import Protocol

from controller.errors import InventoryError
from controller.fleet.inventory.hostnames import split_port

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_COLON_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


class Inventory(Protocol):
    """What a pattern is matched against (model.Inventory): host names in inventory order, the
    groups with their direct child groups (`all` and `ungrouped` among them), a group's hosts."""

    @property
    def hosts(self) -> Mapping[str, object]: ...

    @property
    def children(self) -> Mapping[str, list[str]]: ...

    def group_hosts(self, group: str) -> list[str]: ...


def split(limit: str) -> list[str]:
    """Ansible's split_host_pattern: commas if any; else ':' unless the whole is one address."""
    if "," in limit:
        terms = limit.split(",")
    else:
        terms = [limit] if _one_address(limit) else _COLON_TERMS.findall(limit)
    return [t.strip() for t in terms if t.strip()]


def _one_address(text: str) -> bool:
    """'db1:2222' or an IPv6 address is one term to Ansible, not two."""
    if split_port(text)[1] is not None:
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return ":" not in text


def select(inv: Inventory, limit: str | None) -> list[str]:
    if not limit or not limit.strip():
        return list(inv.hosts)
    terms = split(limit)
    plain = [t for t in terms if t[0] not in "&!"]
    ordered = (plain or ["all"]) + [t for t in terms if t[0] == "&"] + [t for t in terms if t[0] == "!"]
    chosen: list[str] = []
    for term in ordered:
        if term in inv.hosts:
            if term not in chosen:
                chosen.append(term)
            continue
        matched = _match(inv, term.lstrip("&!") if term[0] in "&!" else term, limit)
        if term[0] == "!":
            chosen = [h for h in chosen if h not in set(matched)]
        elif term[0] == "&":
            chosen = [h for h in chosen if h in set(matched)]
        else:
            chosen.extend(h for h in matched if h not in chosen)
    if not chosen:
        raise InventoryError(f"--limit '{limit}' leaves no host")
    keep = set(chosen)
    return [h for h in inv.hosts if h in keep]  # a limit keeps inventory order, as `--limit` does in Ansible


def _match(inv: Inventory, pattern: str, limit: str) -> list[str]:
    expr, subscript = _split_subscript(pattern)
    hosts = _enumerate(inv, expr)
    if not hosts:
        groups = ", ".join(g for g in inv.children if g not in ("all", "ungrouped")) or "none"
        raise InventoryError(f"--limit '{limit}': '{pattern}' matches no host or group "
                             f"(hosts: {', '.join(inv.hosts)}; groups: {groups})")
    if subscript is None:
        return hosts
    start, end = subscript
    try:
        if end is None:
            return [hosts[start]]
        return hosts[start:(len(hosts) - 1 if end == -1 else end) + 1]
    except IndexError:
        raise InventoryError(f"--limit '{limit}': '{pattern}' has no host at index {start} "
                             f"('{expr}' has {len(hosts)}: {', '.join(hosts)})") from None


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    if pattern.startswith("~"):
        return pattern, None
    m = _SUBSCRIPT.match(pattern)
    if not m:
        return pattern, None
    expr, idx, start, _, end = m.groups()
    if idx:
        return expr, (int(idx), None)
    return expr, (int(start), int(end) if end else -1)


def _compile(pattern: str):
    try:
        return re.compile(pattern[1:] if pattern.startswith("~") else fnmatch.translate(pattern))
    except re.error as e:
        raise InventoryError(f"--limit: invalid pattern '{pattern}': {e}") from None


def _enumerate(inv: Inventory, pattern: str) -> list[str]:
    """Ansible's _enumerate_matches: matching groups' hosts, then matching hosts for globs/regexes."""
    regex = _compile(pattern)
    results: list[str] = []
    groups = [g for g in inv.children if regex.match(g)]
    for g in groups:
        results.extend(inv.group_hosts(g))
    if not groups or pattern[0] == "~" or any(c in pattern for c in ".?*["):
        results.extend(h for h in inv.hosts if regex.match(h))
    return [h for i, h in enumerate(results) if h not in results[:i]]
