"""Sysctls tunefleet never writes, whatever a catalog, a spec or a controller says.

The principle: a knob is denied when writing it can do one of three things no performance
experiment needs --

- make the kernel run a program or load code as root (``kernel.core_pattern`` with ``|``,
  ``kernel.modprobe``, ``kernel.usermodehelper.*``, ``fs.binfmt_misc.*`` registrations,
  ``kernel.poweroff_cmd``, ``kernel.hotplug``);
- take back a protection the kernel gives its users against each other or against an attacker
  (address-space randomization, ptrace scope, pointer and log restrictions, BPF and perf for
  unprivileged users, protected links, user namespaces, the magic SysRq key, line-discipline
  autoloading, IP forwarding and source routing);
- be impossible to restore, or stop the machine on purpose (``kernel.modules_disabled`` and
  ``kernel.kexec_load_disabled`` are one-way switches; the ``panic`` family reboots or halts).

The whole core-dump family (``kernel.core_*``) is denied with ``core_pattern``: none of it is
tuning, and one member of it executes programs. The list is defined here once, stdlib only:
the controller refuses these names in catalogs and specs, and the agent refuses to write them
(apply, persist, restore of a journal) so a hostile or broken controller cannot either.
Stdlib only, Python >= 3.7.
"""

import fnmatch
import re

# (pattern, why). Patterns are fnmatch globs over the dotted name; ``*`` also crosses dots.
DENIED = (
    ("kernel.core_*", "configures core dumps; core_pattern can pipe them to a program run as root"),
    ("kernel.modprobe", "names the program the kernel runs as root to load modules"),
    ("kernel.usermodehelper.*", "controls which helper programs the kernel may run as root"),
    ("kernel.poweroff_cmd", "names the program the kernel runs as root to power off"),
    ("kernel.hotplug", "names the program the kernel runs as root on hotplug events"),
    ("fs.binfmt_misc.*", "registers interpreters the kernel runs for matching executables"),
    ("kernel.modules_disabled", "a one-way switch: cannot be restored without a reboot"),
    ("kernel.kexec_load_disabled", "a one-way switch guarding kexec (loading a new kernel)"),
    ("kernel.unprivileged_bpf_disabled", "lets unprivileged users load BPF programs"),
    ("net.core.bpf_jit_harden", "hardens the BPF JIT against spraying attacks"),
    ("net.core.bpf_jit_kallsyms", "exposes BPF JIT addresses to users"),
    ("kernel.yama.*", "limits which processes may ptrace others"),
    ("kernel.randomize_va_space", "address-space layout randomization"),
    ("kernel.kptr_restrict", "hides kernel pointers from users"),
    ("kernel.dmesg_restrict", "hides the kernel log from users"),
    ("kernel.perf_event_paranoid", "limits what unprivileged users may observe with perf"),
    ("kernel.ftrace_*", "kernel tracing: exposes kernel internals"),
    ("kernel.tracepoint_printk", "kernel tracing: exposes kernel internals"),
    ("kernel.stack_tracer_enabled", "kernel tracing: exposes kernel internals"),
    ("kernel.sysrq", "enables the magic SysRq key (reboot, kill all, crash)"),
    ("kernel.ctrl-alt-del", "decides what Ctrl-Alt-Del does"),
    ("kernel.cad_pid", "decides who receives Ctrl-Alt-Del"),
    ("kernel.io_uring_disabled", "limits io_uring, a frequent source of kernel exploits"),
    ("kernel.unprivileged_userns_clone", "lets unprivileged users create user namespaces"),
    ("kernel.apparmor_*", "AppArmor policy for unprivileged user namespaces"),
    ("kernel.seccomp.*", "seccomp policy"),
    ("kernel.keys.*", "kernel keyring limits and policy"),
    ("user.max_user_namespaces", "how many user namespaces unprivileged users may create"),
    ("fs.suid_dumpable", "lets set-uid programs dump core (leaks secrets)"),
    ("fs.protected_*", "protects links, FIFOs and files in sticky folders from other users"),
    ("vm.mmap_min_addr", "guards against NULL-pointer-dereference exploits"),
    ("vm.unprivileged_userfaultfd", "lets unprivileged users use userfaultfd (exploit primitive)"),
    ("dev.tty.ldisc_autoload", "lets users autoload line-discipline modules"),
    ("dev.tty.legacy_tiocsti", "lets processes inject input into a terminal"),
    ("kernel.panic*", "makes the kernel reboot or halt on errors"),
    ("kernel.*_panic", "makes the kernel reboot or halt on errors"),
    ("vm.panic_on_oom", "makes the kernel panic when memory runs out"),
    ("net.ipv4.ip_forward", "turns the host into a router"),
    ("net.ipv4.conf.*.forwarding", "turns the host into a router"),
    ("net.ipv6.conf.*.forwarding", "turns the host into a router"),
    ("net.ipv4.conf.*.accept_source_route", "accepts source-routed packets"),
    ("net.ipv6.conf.*.accept_source_route", "accepts source-routed packets"),
    ("net.ipv4.conf.*.accept_redirects", "lets the network rewrite the routing table"),
    ("net.ipv6.conf.*.accept_redirects", "lets the network rewrite the routing table"),
    ("net.ipv4.conf.*.secure_redirects", "lets the network rewrite the routing table"),
    ("net.ipv4.conf.*.rp_filter", "drops spoofed source addresses"),
)


# Every pattern at once: one regex match per name (every apply checks each knob it writes).
_ANY = re.compile("|".join("(?:%s)" % fnmatch.translate(pattern) for pattern, _ in DENIED))


def denied(name):
    """Why ``name`` is never written, or None when it may be tuned."""
    if not isinstance(name, str) or not _ANY.match(name):
        return None
    for pattern, why in DENIED:
        if fnmatch.fnmatchcase(name, pattern):
            return why
    return None


def refusal(name):
    """The one-line message both ends give for a denied knob, or None."""
    why = denied(name)
    if why is None:
        return None
    return "%s is on tunefleet's deny-list (%s): no catalog or request can enable it" % (name, why)
