#!/usr/bin/env bash
# Take the local fleet down: stop each host's PostgreSQL and sshd, end whatever else still
# runs in its network namespace (SSH sessions, agents, benchmarks), delete the namespaces,
# veths and bridges (and, after BASTION=1, the jump hosts, targets and private nets). Safe to
# run when nothing is up.
#
#   deploy/fleet-down.sh            keep keys, host keys and data dirs for the next fleet-up
#   deploy/fleet-down.sh --purge    also delete deploy/.fleet, inventory/local.yml (and
#                                   local-bastion.yml), the sudoers drop-in and the tfuser
#                                   account (if fleet-up created it)
#   FLEET_NAME=x deploy/fleet-down.sh [--purge]
#                                   the same for fleet x only (deploy/fleet-name.sh); its
#                                   --purge deletes deploy/.fleet-x and inventory/local-x.yml
#
# The per-host mounts (tmpfs state folders, masked rc files) live in the hosts' private mount
# namespaces and vanish with their last process: nothing is unmounted here.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASTION_INVENTORY=$ROOT/inventory/local-bastion.yml
SUDOERS_DST=/etc/sudoers.d/tunefleet-fleet
PRIVATE_BRIDGES=(tfbr1 tfbr2)          # BASTION=1
PRIVATE_NETS=(10.87.78.0/24 10.87.79.0/24)
TFUSER=tfuser

purge=0 quiet=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        --quiet) quiet=1 ;;   # used by fleet-up: say nothing when nothing was up
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
    esac
done

say() { printf 'fleet-down: %s\n' "$*"; }
die() { printf 'fleet-down: error: %s\n' "$*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root; try: sudo $0"
# shellcheck source=deploy/fleet-name.sh
. "$ROOT/deploy/fleet-name.sh"   # PREFIX, BRIDGE, FLEET, INVENTORY of the fleet named by FLEET_NAME
if [[ -n $FLEET_NAME ]]; then
    PRIVATE_BRIDGES=() PRIVATE_NETS=()   # the bastion belongs to the default fleet
fi

# A process that exited but was not reaped yet (a zombie) counts as gone: on machines whose
# init reaps lazily, kill -0 would keep "seeing" it.
alive() {
    local key val
    [[ -n $1 && -r /proc/$1/status ]] || return 1
    while read -r key val _; do
        if [[ $key == State: ]]; then [[ $val != [ZX] ]]; return; fi
    done 2>/dev/null <"/proc/$1/status"
    return 1
}

wait_gone() {   # $1 = tenths of a second to wait, rest = pids; returns 1 if some survive
    local n=$1 p left
    shift
    while (( n-- > 0 )); do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        (( left )) || return 0
        sleep 0.1
    done
    return 1
}

stop_pids() {   # TERM, wait up to 3 s, then KILL
    (( $# )) || return 0
    kill -TERM "$@" 2>/dev/null || true
    wait_gone 30 "$@" || { kill -KILL "$@" 2>/dev/null || true; wait_gone 20 "$@" || true; }
}

# Fleet hosts: namespaces named tf-hN (and the bastion's tf-jN, tf-pN), plus host folders
# with a live pid file (a namespace deleted by hand leaves its daemons running).
hosts=()
while read -r ns _; do
    [[ $ns =~ ^$PREFIX-([hjp][0-9]+)$ ]] && hosts+=("${BASH_REMATCH[1]}")
done < <(ip netns list 2>/dev/null)
for d in "$FLEET"/[hjp]*/; do
    [[ -d $d && $(basename "$d") =~ ^([hjp][0-9]+)$ ]] || continue
    n=${BASH_REMATCH[1]}
    [[ " ${hosts[*]} " == *" $n "* ]] || hosts+=("$n")
done

stopped=0
for h in "${hosts[@]}"; do
    dir=$FLEET/$h ns=$PREFIX-$h did=0

    # PostgreSQL first, cleanly (fast shutdown: a checkpoint, no crash recovery next time).
    pgpid=$(head -n 1 "$dir/pgdata/postmaster.pid" 2>/dev/null || true)
    if alive "$pgpid" && grep -qa postgres "/proc/$pgpid/cmdline" 2>/dev/null; then
        pg_ctl=$(readlink -f "/proc/$pgpid/exe" | sed 's#/postgres$#/pg_ctl#')
        if [[ -x $pg_ctl ]]; then
            runuser -u postgres -- "$pg_ctl" stop -w -t 20 -m fast -D "$dir/pgdata" >/dev/null 2>&1 || true
        fi
        if alive "$pgpid"; then stop_pids "$pgpid"; fi
        did=1
    fi

    # sshd by its pid file, if that pid is still our sshd (pids get reused).
    sshpid=$(cat "$dir/sshd.pid" 2>/dev/null || true)
    if alive "$sshpid" && tr '\0' ' ' <"/proc/$sshpid/cmdline" 2>/dev/null | grep -qF "$dir/sshd_config"; then
        stop_pids "$sshpid"
        did=1
    fi
    rm -f "$dir/sshd.pid"

    # Whatever is left in the namespace: open SSH sessions, agents, benchmark clients.
    if ip netns list 2>/dev/null | grep -qE "^$ns( |$)"; then
        mapfile -t rest < <(ip netns pids "$ns" 2>/dev/null || true)
        stop_pids "${rest[@]}"
        ip netns del "$ns"
        did=1
    fi
    if (( did )); then stopped=$((stopped + 1)); fi
done

# Veths normally die with their namespace; remove any root-side end left over.
while read -r link; do
    ip link del "$link" 2>/dev/null || true
done < <(ip -o link show type veth 2>/dev/null | sed -nE "s/^[0-9]+: (${PREFIX}v-[hjp][0-9]+(-[0-9]+)?)@.*/\\1/p")
did_bridge=0
for br in "$BRIDGE" "${PRIVATE_BRIDGES[@]}"; do
    if ip link show "$br" >/dev/null 2>&1; then
        ip link del "$br"
        did_bridge=1
    fi
done
for net in "${PRIVATE_NETS[@]}"; do
    if [[ $(ip -4 route show type unreachable "$net") ]]; then ip route del unreachable "$net"; fi
done

if (( stopped || did_bridge )); then
    say "fleet down ($stopped host(s) stopped, namespaces and $BRIDGE removed)"
elif (( ! quiet )); then
    say "nothing was up"
fi

if (( purge )) && [[ -n $FLEET_NAME ]]; then
    rm -f "$INVENTORY"
    rm -rf "$FLEET"
    say "purged deploy/.fleet-$FLEET_NAME and inventory/local-$FLEET_NAME.yml"
elif (( purge )); then
    if [[ -f $FLEET/created-$TFUSER ]] && id "$TFUSER" >/dev/null 2>&1; then
        userdel --remove "$TFUSER" 2>/dev/null || userdel "$TFUSER"
        say "deleted user $TFUSER"
    fi
    rm -f "$SUDOERS_DST" "$INVENTORY" "$BASTION_INVENTORY"
    rm -rf "$FLEET"
    # The empty mount points fleet-up made (only if still empty).
    rmdir /root/.tunefleet 2>/dev/null || true
    say "purged deploy/.fleet, inventory/local.yml, inventory/local-bastion.yml and $SUDOERS_DST"
fi
