#!/usr/bin/env bash
# Reboot one host of the local fleet the hard way, as a power cut or a hypervisor reset does.
#
#   deploy/fleet-reboot.sh h2 [--new-boot-id] [--kernel-defaults]      (as root)
#
# Every process of the host (sshd, PostgreSQL, SSH sessions, agents) is killed at once with
# SIGKILL: nothing gets to clean up. Its network namespace is deleted and made again, so every
# per-namespace sysctl is back at the kernel's default, as a reboot leaves the network stack.
# Then the host boots as fleet-up made it: same address, host key and users, net.core.somaxconn
# 128 (its boot configuration), sshd, and PostgreSQL when it had one (which recovers from the
# crash on its own). What a disk would keep is kept: the agent state folders (~/.tunefleet of
# root and tfuser, a tmpfs inside the host) are archived at the moment of the reset and put back.
#
#   --new-boot-id       the host shows a boot_id of its own (a new random one in
#                       deploy/.fleet/hN/boot_id, bind-mounted over /proc/sys/kernel/random/boot_id
#                       inside the host), as a rebooted machine does. The fleet's hosts share
#                       this machine's kernel, so without it the host keeps the machine's boot_id
#                       (and shares it with the others again, as fleet-up made it).
#   --kernel-defaults   boot without the fleet's boot configuration: somaxconn stays at the
#                       kernel's default for a new namespace (4096 on 6.x), as on a host whose
#                       128 was set by hand and never written to a sysctl.d file.
#
# Hold the fleet lock (flock -o /tmp/tunefleet-fleet.lock) around it: other users of the host
# lose their sessions. FLEET_NAME picks another fleet, as for fleet-up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'fleet-reboot: %s\n' "$*"; }
die() { printf 'fleet-reboot: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/fleet-name.sh
. "$ROOT/deploy/fleet-name.sh"
# shellcheck source=deploy/fleet-host.sh
. "$ROOT/deploy/fleet-host.sh"

host="" new_boot=0
FLEET_BOOT_CONFIG=1
for arg in "$@"; do
    case $arg in
        --new-boot-id) new_boot=1 ;;
        --kernel-defaults) FLEET_BOOT_CONFIG=0 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        h[0-9]*) [[ -z $host ]] || die "one host at a time"; host=$arg ;;
        *) echo "usage: $0 hN [--new-boot-id] [--kernel-defaults]" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || die "must run as root"
[[ $host =~ ^h([0-9]+)$ ]] || die "name a fleet host: h1, h2, ..."
i=${BASH_REMATCH[1]} ns=$PREFIX-$host dir=$FLEET/$host
[[ -f $dir/sshd_config ]] || die "$host is not a host of the local fleet ($dir/sshd_config missing)"
ip netns list | grep -qE "^$ns( |$)" || die "$host is not up (no namespace $ns)"
ip=$(sed -nE 's/^ListenAddress (.*):22$/\1/p' "$dir/sshd_config")   # where fleet-up put it
NET=${ip%.*}

SSHD=$(command -v sshd || echo /usr/sbin/sshd)
TF_UID=$(id -u "$TFUSER") TF_GID=$(id -g "$TFUSER") TF_HOME=$(getent passwd "$TFUSER" | cut -d: -f6)
ROUTE_OPTS=()   # as fleet-up made the host's route (QUICKACK)
if ip -n "$ns" route show "$NET.0/24" | grep -q "quickack 1"; then ROUTE_OPTS=(quickack 1); fi
pgpid=$(head -n 1 "$dir/pgdata/postmaster.pid" 2>/dev/null || true)
pg=0
if running_postgres "$pgpid"; then
    pg=1
    PGBIN=$(dirname "$(readlink -f "/proc/$pgpid/exe")")
fi
sshpid=$(cat "$dir/sshd.pid" 2>/dev/null || true)
[[ -n $sshpid && -d /proc/$sshpid ]] || die "$host's sshd is not running (deploy/fleet-up.sh brings the fleet up)"
disk=$dir/state.tar boot_file=""
# A machine keeps its NIC's address across a reboot, and its neighbours' ARP caches rely on it.
mac=$(ip -n "$ns" -o link show eth0 | sed -nE 's/.*link\/ether ([0-9a-f:]+).*/\1/p')

# The reset. The state folders first, as a disk holds them at that instant (every process is
# stopped, so nothing writes while they are read), then every process dies.
mapfile -t pids < <(ip netns pids "$ns")
kill -STOP "${pids[@]}" 2>/dev/null || true
nsenter --target "$sshpid" --mount -- tar -C / -cf "$disk" root/.tunefleet "${TF_HOME#/}/.tunefleet"
kill -KILL "${pids[@]}" 2>/dev/null || true
for ((n = 0; n < 50; n++)); do
    [[ -z $(ip netns pids "$ns") ]] && break
    sleep 0.1
done
[[ -z $(ip netns pids "$ns") ]] || die "processes of $host survived SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')"
ip link del "${PREFIX}v-$host" 2>/dev/null || true
ip netns del "$ns"
rm -f "$dir/sshd.pid"

# The boot.
if (( new_boot )); then
    boot_file=$dir/boot_id
    python3 -c 'import uuid; print(uuid.uuid4())' >"$boot_file"
else
    rm -f "$dir/boot_id"
fi
net_host "$host" "$BRIDGE" "$ip"
ip -n "$ns" link set eth0 address "$mac"
start_sshd "$host" "$disk" "$boot_file"
sshd_pid "$host" >/dev/null
if (( pg )); then
    clear_stale_pid "$dir/pgdata"
    start_pg "$i" || die "$host: PostgreSQL did not start, see $dir/postgres.log"
fi
wait_tcp "$ip" 22 $(( $(date +%s) + SSH_WAIT_S )) || die "$host: sshd at $ip:22 does not accept connections, see $dir/sshd.log"
rm -f "$disk"
say "$host rebooted: boot_id $(nsenter --target "$(cat "$dir/sshd.pid")" --mount -- cat /proc/sys/kernel/random/boot_id)," \
    "net.core.somaxconn $(ip netns exec "$ns" cat /proc/sys/net/core/somaxconn)$( (( pg )) && echo ", PostgreSQL up")"
