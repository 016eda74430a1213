"""Groups, hosts and their variables as Ansible's InventoryData keeps them, and how a host's
variables are merged from them.

The merge follows Ansible's default VARIABLE_PRECEDENCE: the `all` group's inline vars, then
every other group of the host sorted by (depth, ansible_group_priority, name), then
group_vars/all, then group_vars/<group> in the same order, then the host's inline vars, then
host_vars/<host>. Each later source replaces a key whole (hash_behaviour=replace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.errors import InventoryError


@dataclass
class Group:
    name: str
    vars: dict = field(default_factory=dict)
    file_vars: dict = field(default_factory=dict)  # from group_vars/
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1


@dataclass
class Host:
    name: str
    vars: dict = field(default_factory=dict)
    file_vars: dict = field(default_factory=dict)  # from host_vars/


class Graph:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
        self.hosts: dict[str, Host] = {}
        self.add_child("all", "ungrouped")

    def add_group(self, name) -> Group:
        if not isinstance(name, str) or not name:
            raise InventoryError(f"group name {name!r} must be a non-empty string")
        return self.groups.setdefault(name, Group(name))

    def add_host(self, name: str, group: str, port: int | None = None) -> Host:
        if not name:
            raise InventoryError("empty host name")
        if name not in self.hosts:  # as in Ansible, a port given again later is ignored
            self.hosts[name] = Host(name, {"ansible_port": port} if port is not None else {})
        g = self.groups[group]
        if name not in g.hosts:
            g.hosts.append(name)
        return self.hosts[name]

    def add_child(self, parent: str, child: str) -> None:
        p, c = self.groups[parent], self.groups[child]
        if parent == child or parent in self.descendants(child):
            raise InventoryError(f"group '{child}' as a child of '{parent}' makes a loop")
        if child not in p.children:
            p.children.append(child)
            c.parents.append(parent)

    def set_group_var(self, group: str, key: str, value) -> None:
        if key == "ansible_group_priority":
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(f"group {group}: ansible_group_priority must be a number, got {value!r}") from None
        else:
            self.groups[group].vars[key] = value

    def descendants(self, group: str) -> set[str]:
        seen, todo = set(), list(self.groups[group].children)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.groups[g].children)
        return seen

    def reconcile(self) -> None:
        """Ansible's reconcile_inventory: orphan groups go under all, group-less hosts into ungrouped."""
        for g in list(self.groups.values()):
            if g.name != "all" and not g.parents:
                self.add_child("all", g.name)
        grouped = {h for g in self.groups.values() if g.name not in ("all", "ungrouped") for h in g.hosts}
        ungrouped = self.groups["ungrouped"]
        ungrouped.hosts = [h for h in ungrouped.hosts if h not in grouped]
        ungrouped.hosts += [h for h in self.hosts if h not in grouped and h not in ungrouped.hosts]

    def depth(self, group: str, _memo: dict | None = None) -> int:
        memo = {} if _memo is None else _memo
        if group not in memo:
            parents = self.groups[group].parents
            memo[group] = 1 + max(self.depth(p, memo) for p in parents) if parents else 0
        return memo[group]

    def host_groups(self, host: str) -> list[str]:
        """Every group the host is in, directly or through a child group (`all` included)."""
        direct = [g.name for g in self.groups.values() if host in g.hosts]
        found: list[str] = []
        todo = list(direct)
        while todo:
            g = todo.pop(0)
            if g not in found:
                found.append(g)
                todo.extend(self.groups[g].parents)
        return found

    def host_vars(self, host: str) -> dict:
        memo: dict = {}
        groups = sorted((self.groups[g] for g in self.host_groups(host) if g != "all"),
                        key=lambda g: (self.depth(g.name, memo), g.priority, g.name))
        merged = dict(self.groups["all"].vars)
        for g in groups:
            merged.update(g.vars)
        merged.update(self.groups["all"].file_vars)
        for g in groups:
            merged.update(g.file_vars)
        merged.update(self.hosts[host].vars)
        merged.update(self.hosts[host].file_vars)
        return merged

    def listing(self) -> dict:
        """The shape of `ansible-inventory --list`."""
        hostvars = {h: self.host_vars(h) for h in self.hosts}
        out: dict = {"_meta": {"hostvars": {h: v for h, v in hostvars.items() if v}}}
        for g in self.groups.values():
            body = {}
            if g.hosts and g.name != "all":
                body["hosts"] = list(g.hosts)
            if g.children:
                body["children"] = list(g.children)
            if body or g.name == "all":
                out[g.name] = body
        return out
