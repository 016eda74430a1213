"""What an inventory resolves to: hosts with their connection settings, and groups.

Every reader (tunefleet's own format, the built-in Ansible reader, `ansible-inventory`) ends
here, so selection (`--limit`), `tunefleet hosts` and the SSH transport see one shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from controller.errors import InventoryError
from controller.fleet.inventory.patterns import select


@dataclass(frozen=True)
class HostSpec:
    """How to reach one host. Unset fields fall back to ~/.ssh/config, then to ssh's defaults."""

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    sudo: bool | None = None  # become: None = use sudo -n when the SSH user is not root
    become_user: str | None = None  # whom sudo runs the agent as (default root)
    ssh_args: tuple[str, ...] = ()  # extra ssh(1) command-line arguments (ansible_ssh_common_args, ...)
    groups: tuple[str, ...] = ()
    ray_resource: str | None = None  # --workers ray: the custom resource of the Ray node(s) that can reach it

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address, as ssh writes it
        return f"{host}:{self.port or 22}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ssh_args"] = list(self.ssh_args)
        d["groups"] = list(self.groups)
        return d


@dataclass
class Inventory:
    """Hosts in inventory order, and groups as Ansible has them.

    `children` holds each group's direct child groups and `members` its direct hosts, both in
    the order they were declared; `groups` is derived: every host of a group or of any group
    below it, in the order Ansible lists them (the group's own hosts, then its children's,
    breadth first). The implicit groups `all` and `ungrouped` are part of `children`/`members`
    (so patterns see them as Ansible does) but not of `groups`.
    """

    hosts: dict[str, HostSpec]
    members: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    reader: str = ""
    not_ssh: dict[str, str] = field(default_factory=dict)  # host -> why Ansible would not use SSH for it

    @property
    def groups(self) -> dict[str, list[str]]:
        return {g: self.group_hosts(g) for g in self.children if g not in ("all", "ungrouped")}

    def group_hosts(self, group: str) -> list[str]:
        """Ansible's Group.get_hosts(): own hosts first, then descendants breadth first, no duplicates."""
        order, queue, seen_groups = [], [group], {group}
        while queue:
            g = queue.pop(0)
            order.append(g)
            for child in self.children.get(g, ()):
                if child not in seen_groups:
                    seen_groups.add(child)
                    queue.append(child)
        names: list[str] = []
        for g in order:
            names.extend(h for h in self.members.get(g, ()) if h not in names)
        return names

    def select(self, limit: str | None) -> list[HostSpec]:
        """Hosts matching an Ansible host pattern (see patterns.py); every host when no limit."""
        names = select(self, limit)
        other = [n for n in names if n in self.not_ssh]
        if other:
            raise InventoryError(f"host {other[0]}: {self.not_ssh[other[0]]}, and tunefleet reaches hosts over SSH "
                                 f"only; leave it out with --limit '{limit + ':' if limit else 'all:'}!{other[0]}'")
        return [self.hosts[n] for n in names]
