#!/usr/bin/env bash
# The boot step of a local fleet host that systemd-sysctl (or procps' `sysctl --system`) is on a
# machine of its own: apply the host's sysctl configuration, in sysctl's own order.
#
#   deploy/fleet-sysctl-boot.sh        (run by fleet-host.sh inside the host's namespaces, as root)
#
# The real `sysctl --system` decides which file wins. The fleet's hosts share one kernel, so
# only per-namespace settings (net.*) may reach it from a host's boot: every other line would
# change the machine and every other host. The files are read through copies that keep only
# their net.* lines, each copy bind-mounted over its folder in a mount namespace of this step
# alone (same names, same folders: sysctl's ordering and masking are untouched), and
# `sysctl --system` then runs over them. Keys that are read-only inside a namespace
# (net.core.rmem_max, ...) are refused by the kernel and reported in the host's boot-sysctl.log.
set -uo pipefail

if [[ ${1:-} != --inside ]]; then
    exec unshare --mount --propagation private -- bash "$0" --inside
fi
tmp=$(mktemp -d /tmp/tf-sysctl-boot.XXXXXX)
mount -t tmpfs -o mode=0755,size=4m tf-sysctl-boot "$tmp"
trap 'umount -R "$tmp" 2>/dev/null; rmdir "$tmp"' EXIT   # the folder is the machine's /tmp
only_net() { sed -nE '/^[[:space:]]*-?[[:space:]]*net[./]/p' "$1"; }
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
    [[ -d $d ]] || continue
    mkdir -p "$tmp$d"
    for f in "$d"/*.conf; do
        [[ -e $f ]] && only_net "$f" >"$tmp$d/${f##*/}"
    done
    mount --bind "$tmp$d" "$d"
done
if [[ -f /etc/sysctl.conf ]]; then
    only_net /etc/sysctl.conf >"$tmp/sysctl.conf"
    mount --bind "$tmp/sysctl.conf" /etc/sysctl.conf
fi
echo "boot $(date -u +%FT%TZ)"
sysctl --system
exit 0
