"""SSH options compared field by field with `ssh -G`, the reference.

Each case runs in a private mount namespace in which /etc/passwd gives the account a temporary
home and /etc/ssh/ssh_config is the case's own system file: ssh (which reads the account's
home from the password database, not $HOME) and tunefleet then see only the case's files,
never the developer's ~/.ssh ($HOME is set to the same folder: ssh expands ~ in Include
patterns from it). In there, the case's command line goes to `ssh -G` as a user
would type it, and the same host goes through tunefleet's resolution, with ssh -G and with
the built-in reader. The built-in reader must agree on every case it does not refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs the ssh client (the reference), unshare and root for a private mount namespace")

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("hostname", "port", "user", "identity_files", "identities_only", "proxy_jump", "proxy_command",
          "user_known_hosts", "global_known_hosts", "strict_host_key_checking", "connect_timeout")

# What runs inside the namespace: prints {"ssh": ssh -G's answer, "ours": ..., "builtin": ...}.
INSIDE = textwrap.dedent('''
    import json, os, subprocess, sys
    from dataclasses import asdict
    from controller.errors import UserError
    from controller.fleet import sshconfig
    from controller.fleet.inventory import HostSpec

    case = json.loads(sys.argv[1])
    spec = HostSpec(**case["spec"])
    cli = ["ssh", "-G"] + (["-F", case["config"]] if case["config"] else []) + case["cli"] + [case["spec"]["host"]]
    raw = {"identityfile": []}
    for line in subprocess.run(cli, capture_output=True, text=True, check=True).stdout.splitlines():
        k, _, v = line.partition(" ")
        raw[k.lower()].append(v) if k.lower() == "identityfile" else raw.__setitem__(k.lower(), v)
    if raw.get("proxycommand", "none") != "none":
        # ssh -G leaves ProxyCommand tokens alone: let ssh itself run it and say what it ran
        subprocess.run(["ssh", "-o", "BatchMode=yes", *cli[2:]], capture_output=True, timeout=10)
        raw["proxycommand"] = open(case["proxy_out"]).read().strip()

    def ours(reader):
        which = sshconfig.shutil.which
        sshconfig.shutil.which = (lambda name: None) if reader == "builtin" else which
        try:
            o = sshconfig.resolve(spec, case["config"])
            hops = [asdict(sshconfig.resolve_hop(h, sshconfig.config_file_of(spec.ssh_args, case["config"])))
                    for h in o.proxy_jump]
            got = asdict(o)
            if o.proxy_command:  # run it as ssh would, compare what it did
                os.remove(case["proxy_out"])
                subprocess.run(["sh", "-c", "exec " + o.proxy_command], timeout=10)
                got["proxy_command"] = open(case["proxy_out"]).read().strip()
            return {"options": got, "hops": hops}
        except UserError as e:
            return {"refused": str(e)}
        finally:
            sshconfig.shutil.which = which

    hops_ssh = []
    for hop in (raw.get("proxyjump", "none").split(",") if raw.get("proxyjump", "none") != "none" else []):
        user, host, port = sshconfig.parse_jump(hop)
        cmd = ["ssh", "-G"] + (["-F", case["config"]] if case["config"] else [])
        cmd += (["-l", user] if user else []) + (["-p", str(port)] if port else []) + [host]
        hop_raw = {"identityfile": []}
        for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines():
            k, _, v = line.partition(" ")
            hop_raw[k.lower()].append(v) if k.lower() == "identityfile" else hop_raw.__setitem__(k.lower(), v)
        hops_ssh.append(hop_raw)
    print(json.dumps({"ssh": raw, "ssh_hops": hops_ssh, "home": sshconfig._home().as_posix(),
                      "ours": ours("ssh"), "builtin": ours("builtin")}))
''')


def expected(raw: dict, home: str) -> dict:
    """ssh -G's answer in SSHOptions' terms (ssh expands ~ with the account's home)."""
    def path(p):
        return home + p[1:] if p.startswith("~/") else p

    jump = raw.get("proxyjump", "none")
    return {
        "hostname": raw["hostname"], "port": int(raw["port"]), "user": raw["user"],
        "identity_files": [path(p) for p in raw["identityfile"]],
        "identities_only": raw["identitiesonly"] == "yes",
        "proxy_jump": [] if jump == "none" else jump.split(","),
        "proxy_command": None if raw.get("proxycommand", "none") == "none" else raw["proxycommand"],
        "user_known_hosts": [path(p) for p in raw["userknownhostsfile"].split()],
        "global_known_hosts": [path(p) for p in raw["globalknownhostsfile"].split()],
        "strict_host_key_checking": {"true": "yes", "false": "no"}.get(raw["stricthostkeychecking"],
                                                                      raw["stricthostkeychecking"]),
        "connect_timeout": None if raw["connecttimeout"] == "none" else float(raw["connecttimeout"]),
    }


def normal(options: dict) -> dict:
    return {f: list(options[f]) if isinstance(options[f], (list, tuple)) else options[f] for f in FIELDS}


# name: user files under ~/.ssh, the system file, the -F file (or None), the hosts, and the
# inventory host (HostSpec fields) with the ssh command line a user would type for it.
CASES = {
    "include_glob_relative": dict(
        home={"config": "Include conf.d/*.conf\nHost *\n  User fallback\n",
              "conf.d/20-b.conf": "Host web\n  Port 2202\n  User deploy\n",
              "conf.d/10-a.conf": "Host web\n  HostName 10.0.0.5\n  Port 2201\n"},
        hosts=[({"host": "web"}, [])]),
    "include_inside_host_block": dict(
        home={"config": "Host db*\n  Include db.conf\n  User dbadmin\nHost *\n  User other\n",
              "db.conf": "HostName 10.1.1.1\nHost db2\n  Port 2222\n"},
        hosts=[({"host": "db1"}, []), ({"host": "db2"}, [])]),
    "match_host_before_and_after_hostname": dict(
        home={"config": "Host app\n  HostName 10.2.0.9\nMatch host 10.2.*\n  User matched\n"
                        "Match originalhost late\n  Port 2345\nHost late\n  HostName 10.2.0.10\n"
                        "Match host 10.2.0.10\n  User after\n"},
        hosts=[({"host": "app"}, []), ({"host": "late"}, [])]),
    "host_patterns_with_negation": dict(
        home={"config": "Host *.example.com !bastion.example.com\n  ProxyJump ops@bastion.example.com\n"
                        "  User ops\nHost b?stion.*\n  Port 2022\n"},
        hosts=[({"host": "a.example.com"}, []), ({"host": "bastion.example.com"}, [])]),
    "proxyjump_multi_hop_and_comma_list": dict(
        home={"config": "Host target\n  ProxyJump u1@j1:2201,ssh://u2@j2:2202,j3\n"
                        "Host j1\n  IdentityFile ~/.ssh/j1key\n  UserKnownHostsFile ~/.ssh/kh_j1\n"
                        "Host j2\n  Port 9999\n  User nobody\n  HostName 10.9.9.2\n"
                        "Host j3\n  User third\n  IdentitiesOnly yes\n",
              "j1key": ""},
        hosts=[({"host": "target"}, [])]),
    "proxyjump_from_inventory_args": dict(
        home={"config": "Host t\n  ProxyJump cfg-jump\n  Port 22\n"},
        hosts=[({"host": "t", "ssh_args": ("-J", "admin@gw:2222")}, ["-J", "admin@gw:2222"]),
               ({"host": "t", "ssh_args": ("-o", "ProxyJump=gw2,gw3")}, ["-o", "ProxyJump=gw2,gw3"])]),
    "proxycommand_tokens": dict(
        home={"config": "Host pc\n  HostName 10.3.3.3\n  Port 2200\n  User pcuser\n"
                        "  ProxyCommand sh -c 'echo %h %p %r %n %% > {proxy_out}'\n"},
        hosts=[({"host": "pc"}, [])]),
    "identityfile_list_plus_inventory_key": dict(
        home={"config": "Host k\n  IdentityFile ~/.ssh/a\n  IdentityFile ~/.ssh/b\nHost *\n  IdentityFile ~/.ssh/c\n",
              "a": "", "b": "", "c": "", "inv": ""},
        hosts=[({"host": "k", "key": "{home}/.ssh/inv"}, ["-i", "{home}/.ssh/inv"]),
               ({"host": "k"}, []), ({"host": "other"}, [])]),
    "identities_only_and_defaults": dict(
        home={"config": "Host io\n  IdentitiesOnly yes\n"},
        hosts=[({"host": "io"}, []), ({"host": "plain"}, [])]),
    "user_port_precedence": dict(
        home={"config": "Host pp\n  User cfguser\n  Port 2000\n"},
        hosts=[({"host": "pp", "user": "invuser", "port": 3000, "ssh_args": ("-o", "Port=4000")},
                ["-o", "Port=4000", "-p", "3000", "-l", "invuser"]),
               ({"host": "pp", "user": "invuser", "ssh_args": ("-o", "User=argsuser")},
                ["-o", "User=argsuser", "-l", "invuser"]),
               ({"host": "pp"}, [])]),
    "system_wide_config": dict(
        home={"config": "Host sys\n  Port 1111\n"},
        system="Host sys\n  User sysuser\n  Port 2345\nHost *\n  GlobalKnownHostsFile /etc/ssh/extra_known\n"
               "  ConnectTimeout 7\n",
        hosts=[({"host": "sys"}, [])]),
    "known_hosts_files": dict(
        home={"config": "Host kh\n  UserKnownHostsFile ~/.ssh/kh1 ~/.ssh/kh2\n  StrictHostKeyChecking accept-new\n"
                        "Host strict\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /etc/ssh/g1 /etc/ssh/g2\n"},
        hosts=[({"host": "kh"}, []), ({"host": "strict"}, []),
               ({"host": "kh", "known_hosts": "/srv/inventory_known_hosts"},
                ["-o", "UserKnownHostsFile=\"/srv/inventory_known_hosts\""])]),
    "explicit_file_skips_the_others": dict(
        home={"config": "Host *\n  User from-user-config\n", "my.conf": "Host f\n  HostName 1.2.3.4\n  Include "
                                                                        "extra.conf\n",
              "extra.conf": "Port 2121\n"},
        system="Host *\n  User from-system\n",
        config="{home}/.ssh/my.conf",
        hosts=[({"host": "f"}, [])]),
    "hostname_token": dict(
        home={"config": "Host tok*\n  HostName %h.internal.example\n"},
        hosts=[({"host": "tok1"}, [])]),
}

# Cases the built-in reader must refuse (one line naming openssh-client), never answer.
REFUSED = {
    "match_exec": dict(home={"config": "Match exec true\n  User x\n"}, hosts=[({"host": "m"}, [])]),
    "unknown_ssh_argument": dict(home={"config": ""}, hosts=[({"host": "u", "ssh_args": ("-A",)}, ["-A"])]),
}


def run_case(tmp_path: Path, case: dict) -> list[dict]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    proxy_out = str(tmp_path / "proxy.out")
    fill = lambda s: s.replace("{home}", str(home)).replace("{proxy_out}", proxy_out)  # noqa: E731
    for name, text in case["home"].items():
        f = home / ".ssh" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(fill(text))
    system = tmp_path / "ssh_config"
    system.write_text(case.get("system", ""))
    passwd = tmp_path / "passwd"
    uid = os.getuid()
    passwd.write_text("".join(
        ":".join(f[:5] + [str(home)] + f[6:]) + "\n" if f[2] == str(uid) else ":".join(f) + "\n"
        for f in (line.split(":") for line in Path("/etc/passwd").read_text().splitlines())))
    results = []
    for spec, cli in case["hosts"]:
        spec = {k: fill(v) if isinstance(v, str) else v for k, v in spec.items()}
        payload = {"spec": {"name": "n", **spec}, "cli": [fill(a) for a in cli],
                   "config": fill(case["config"]) if case.get("config") else None, "proxy_out": proxy_out}
        script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/ssh/ssh_config && '
                  'exec "$3" -c "$4" "$5"')
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                            str(passwd), str(system), sys.executable, INSIDE, json.dumps(payload)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT,
                           env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(home)})
        assert p.returncode == 0, p.stderr
        results.append(json.loads(p.stdout))
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_resolution_matches_ssh_G(name, tmp_path):
    for r in run_case(tmp_path, CASES[name]):
        want = expected(r["ssh"], r["home"])
        for reader in ("ours", "builtin"):
            got = r[reader]
            assert "refused" not in got, f"{reader}: {got.get('refused')}"
            assert normal(got["options"]) == want, reader
            hops = [normal(h) for h in got["hops"]]
            assert hops == [expected(h, r["home"]) for h in r["ssh_hops"]], reader


@pytest.mark.parametrize("name", list(REFUSED))
def test_builtin_reader_refuses_what_it_cannot_resolve(name, tmp_path):
    for r in run_case(tmp_path, REFUSED[name]):
        assert "refused" not in r["ours"]
        assert "install openssh-client" in r["builtin"]["refused"]


def test_parse_jump_forms():
    from controller.fleet.sshconfig import parse_jump

    assert parse_jump("host") == (None, "host", None)
    assert parse_jump("u@h:2200") == ("u", "h", 2200)
    assert parse_jump("ssh://u@h:22") == ("u", "h", 22)
    assert parse_jump("[fe80::1]:2222") == (None, "fe80::1", 2222)
