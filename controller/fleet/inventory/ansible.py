"""`ansible-inventory` as the source of truth where ansible-core is installed.

`ansible-inventory -i SOURCE --list` resolves every format, group_vars/host_vars, vault and
plugins exactly as a playbook would see them (testinfra reads inventories the same way). It
leaves Jinja2 templates unrendered and vault values encrypted, so when a connection variable
holds one, `ansible -m debug` renders those variables for the hosts that need it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from controller.errors import InventoryError
from controller.fleet.inventory.hostvars import USED_VARS

TIMEOUT = 120.0


def find(tool: str = "ansible-inventory") -> str | None:
    """The tool on PATH, else beside this interpreter (a virtualenv's bin/ not on PATH)."""
    beside = Path(sys.executable).parent / tool
    return shutil.which(tool) or (str(beside) if os.access(beside, os.X_OK) else None)


def _env() -> dict:
    """The user's environment (ansible.cfg, vault password file, ...) plus: an inventory Ansible
    cannot parse is an error, not a warning and an empty inventory; plain one-line ad-hoc output."""
    return {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True", "ANSIBLE_VERBOSITY": "0",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "False"}


def _run(argv: list[str], source: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=_env(),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InventoryError(f"{source}: {Path(argv[0]).name} did not answer within {TIMEOUT:.0f} s") from None
    except OSError as e:
        raise InventoryError(f"{source}: cannot run {argv[0]}: {e}") from None
    if proc.returncode != 0:
        raise InventoryError(f"{source}: {Path(argv[0]).name} failed: {_reason(proc.stderr or proc.stdout, source)}")
    return proc.stdout


def _reason(stderr: str, source: str) -> str:
    """Ansible explains a failure over many lines, once per plugin it tried: keep the one line
    from the plugin meant for this file (yaml for .yml/.yaml/.json, else ini), or the error."""
    plugin = "yaml" if source.endswith((".yml", ".yaml", ".json")) else "ini"
    tried = dict(re.findall(r"\[WARNING\]: Failed to parse inventory with '(\w+)' plugin: (.*)", stderr))
    errors = re.findall(r"(?:\[ERROR\]:|ERROR!)\s*(.*)", stderr)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    failed = re.search(r"^(\S+) \| (?:FAILED!|UNREACHABLE!) => (\{.*\})", stderr, re.M | re.S)
    if failed:  # an ad-hoc task's answer: the host and its message
        try:
            return f"{failed.group(1)}: {json.loads(failed.group(2)).get('msg', '')}"[:400]
        except json.JSONDecodeError:
            pass
    pick = tried.get(plugin) or (errors[0] if errors else (lines[-1] if lines else "no output"))
    pick = pick.removeprefix("Failed to parse inventory: ")
    return re.sub(r"<class '(?:[\w.]*\._)?(?:Ansible)?(?:Tagged)?(\w+)'>", lambda m: m.group(1).lower(), pick)[:400]


def list_inventory(tool: str, source: str) -> dict:
    out = _run([tool, "-i", source, "--list"], source)
    try:
        data = json.loads(out)
    except json.JSONDecodeError as e:
        raise InventoryError(f"{source}: ansible-inventory printed something that is not JSON: {e}") from None
    hostvars = data.get("_meta", {}).get("hostvars", {})
    unresolved = sorted(h for h, hv in hostvars.items() if any(_unresolved(hv.get(v)) for v in USED_VARS))
    if unresolved:
        rendered = render(source, unresolved)
        for host, values in rendered.items():
            hostvars[host].update(values)
    return data


def _unresolved(value) -> bool:
    if isinstance(value, dict):
        return "__ansible_vault" in value
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(source: str, hosts: list[str]) -> dict[str, dict]:
    """Connection variables as a task would see them: templates rendered, vault decrypted."""
    tool = find("ansible")
    if tool is None:
        raise InventoryError(f"{source}: templated or vaulted connection variables need `ansible` to render them")
    expr = "{{ {" + ", ".join(f"'{v}': {v} | default(omit)" for v in sorted(USED_VARS)) + "} }}"
    out = _run([tool, ",".join(hosts), "-i", source, "-o", "-m", "ansible.builtin.debug",
                "-a", f"msg={expr}"], source)
    rendered = {}
    for line in out.splitlines():
        name, sep, rest = line.partition(" | SUCCESS => ")
        if sep:
            msg = json.loads(rest)["msg"]
            rendered[name] = {k: v for k, v in msg.items() if not str(v).startswith("__omit_place_holder__")}
    missing = [h for h in hosts if h not in rendered]
    if missing:
        raise InventoryError(f"{source}: ansible could not render the connection variables of {', '.join(missing)}")
    return rendered
