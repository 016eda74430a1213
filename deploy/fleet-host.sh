# Sourced by fleet-up.sh and fleet-reboot.sh (after fleet-name.sh): how one host of the local
# fleet is brought up: its network namespace and link, sshd in its own UTS and mount namespaces,
# PostgreSQL inside them. The callers set FLEET, SSHD, TF_UID, TF_GID, TF_HOME, ROUTE_OPTS and
# (for start_pg) PGBIN.

TFUSER=tfuser
SSH_WAIT_S=10         # bound for "every sshd accepts TCP"
# Daemons get a small, predictable environment, not the caller's (pyenv shims, venvs, ...).
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

running_postgres() {   # $1 = pid: a live (not zombie) postgres process?
    local key val
    [[ $1 =~ ^[0-9]+$ && -r /proc/$1/status ]] || return 1
    [[ $(readlink "/proc/$1/exe" 2>/dev/null) == */postgres ]] || return 1
    while read -r key val _; do
        if [[ $key == State: ]]; then [[ $val != [ZX] ]]; return; fi
    done <"/proc/$1/status"
    return 1
}

clear_stale_pid() {   # $1 = a PostgreSQL data dir whose server is known to be stopped
    # A server that died without cleaning up leaves postmaster.pid behind; postgres refuses to
    # start while that pid exists, even as an unreaped zombie or a reused pid.
    if [[ -f $1/postmaster.pid ]] && ! running_postgres "$(head -n 1 "$1/postmaster.pid")"; then
        rm -f "$1/postmaster.pid"
    fi
}

# Commands run inside a new host's UTS + mount namespaces (already inside its network
# namespace): set the hostname, cover the per-user state folders with private tmpfs, mask
# the rc files, give PostgreSQL a private socket dir and the host its own /etc/hosts, then
# become sshd. sshd daemonizes (setsid, stdio to /dev/null) and writes its pid file once it
# listens; everything it starts later lives in these namespaces too. deploy/fleet-reboot.sh also
# gives it the host's "disk" (an archive of the state folders, unpacked into the fresh tmpfs) and a
# boot_id file to show in place of the machine's. Each host has its own sysctl configuration
# (/etc/sysctl.d, /etc/sysctl.conf) and TuneD folder (/etc/tuned): copies of the machine's made by
# fleet-up in $dir/etc, bind-mounted over the machine's and kept across a reboot as a disk keeps
# them; at boot they are applied as systemd-sysctl does (deploy/fleet-sysctl-boot.sh).
# shellcheck disable=SC2016  # expanded by the inner bash
INSIDE='
set -euo pipefail
name=$1 dir=$2 empty=$3 tf_uid=$4 tf_gid=$5 tf_home=$6 sshd=$7 sysctl_boot=$8 disk=${9:-} boot_id=${10:-}
hostname "$name"
mount -t tmpfs -o mode=0700,size=64m tunefleet-state /root/.tunefleet
mount -t tmpfs -o "mode=0700,size=64m,uid=$tf_uid,gid=$tf_gid" tunefleet-state "$tf_home/.tunefleet"
if [ -n "$disk" ]; then tar -C / -xpf "$disk"; fi
if [ -n "$boot_id" ]; then mount --bind "$boot_id" /proc/sys/kernel/random/boot_id; fi
for rc in /root/.bashrc "$tf_home/.bashrc"; do
    if [ -f "$rc" ]; then mount --bind "$empty" "$rc"; fi
done
if [ -d /run/postgresql ] && id postgres >/dev/null 2>&1; then
    mount -t tmpfs -o mode=2775,size=1m,uid=$(id -u postgres),gid=$(id -g postgres) pg-socket /run/postgresql
fi
mount --bind "$dir/hosts" /etc/hosts
if [ -d "$dir/etc/sysctl.d" ]; then
    mount --bind "$dir/etc/sysctl.d" /etc/sysctl.d
    if [ -f /etc/sysctl.conf ]; then mount --bind "$dir/etc/sysctl.conf" /etc/sysctl.conf; fi
    if [ -d /etc/tuned ]; then mount --bind "$dir/etc/tuned" /etc/tuned; fi
    bash "$sysctl_boot" >"$dir/boot-sysctl.log" 2>&1 || true
fi
exec "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"
'

net_link() {   # $1 = namespace, $2 = its interface, $3 = root-side veth, $4 = bridge, $5 = address (/24)
    local ns=$1 dev=$2 veth=$3 bridge=$4 ip=$5
    ip link add "$veth" type veth peer name "$dev" netns "$ns"
    if [[ -e /proc/sys/net/ipv6/conf/$veth/disable_ipv6 ]]; then echo 1 >"/proc/sys/net/ipv6/conf/$veth/disable_ipv6"; fi
    ip link set "$veth" master "$bridge" up
    ip -n "$ns" addr add "$ip/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" route replace "${ip%.*}.0/24" dev "$dev" proto kernel scope link src "$ip" "${ROUTE_OPTS[@]}"
    if ip netns exec "$ns" test -e "/proc/sys/net/ipv6/conf/$dev/disable_ipv6"; then
        ip netns exec "$ns" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$dev/disable_ipv6"
    fi
}

net_host() {   # $1 = host (h3, j1, ...), then (bridge address) pairs: namespace, veths, addresses
    local h=$1 ns=$PREFIX-$1 n=0
    shift
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    while (( $# )); do
        net_link "$ns" "eth$n" "${PREFIX}v-$h$( (( n )) && echo "-$n")" "$1" "$2"
        shift 2
        n=$((n + 1))
    done
    # No default route: the only reachable addresses are loopback and the host's own /24s.
    #
    # A fresh network namespace on a 6.x kernel starts with net.core.somaxconn=4096, but
    # openEuler 20.03 (kernel 4.19) and many older hosts ship 128: the fleet starts where the
    # demo's real targets start, so tuning the accept queue has something to find. Set before
    # sshd/postgres listen (listen() takes the value at that moment). IPv6 off on eth0 as on
    # the bridge. This is the hosts' boot configuration: FLEET_BOOT_CONFIG=0 (fleet-reboot.sh
    # --kernel-defaults) boots a host without it.
    if (( ${FLEET_BOOT_CONFIG:-1} )); then
        ip netns exec "$ns" sh -c 'echo 128 > /proc/sys/net/core/somaxconn'
    fi
}

start_sshd() {   # $1 = host (h3, j1, ...), then optionally a state archive and a boot_id file (see INSIDE)
    local h=$1 dir=$FLEET/$1
    "$SSHD" -t -f "$dir/sshd_config" || die "$h: sshd rejects $dir/sshd_config"
    setsid "${CLEAN_ENV[@]}" ip netns exec "$PREFIX-$h" unshare --uts --mount --propagation private -- \
        bash -c "$INSIDE" inside "$PREFIX-$h" "$dir" "$FLEET/empty-rc" "$TF_UID" "$TF_GID" "$TF_HOME" "$SSHD" \
        "$ROOT/deploy/fleet-sysctl-boot.sh" "${2:-}" "${3:-}" \
        </dev/null >>"$dir/launch.log" 2>&1 \
        || die "$h: could not start sshd in its namespaces, see $dir/launch.log"
}

sshd_pid() {   # $1 = host (h3, j1, ...); waits (bounded) for sshd's pid file
    local f=$FLEET/$1/sshd.pid n
    for ((n = 0; n < 100; n++)); do
        if [[ -s $f ]]; then cat "$f"; return 0; fi
        sleep 0.05
    done
    die "$1: sshd wrote no pid file within 5 s, see $FLEET/$1/sshd.log"
}

start_pg() {   # $1 = host index: postgres inside the host's namespaces (those of its sshd)
    local i=$1 d=$FLEET/h$1/pgdata pid
    pid=$(sshd_pid "h$i")
    (cd / && nsenter --target "$pid" --net --uts --mount -- \
        runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/pg_ctl" start -w -t 30 -D "$d" -l "$FLEET/h$i/postgres.log") \
        </dev/null >/dev/null 2>&1 \
        || { echo "fleet-up: error: h$i: PostgreSQL did not start, see $FLEET/h$i/postgres.log" >&2; return 1; }
}

wait_tcp() {   # $1 = address, $2 = port, $3 = deadline (epoch seconds)
    until timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; do
        (( $(date +%s) < $3 )) || return 1
        sleep 0.05
    done
}

host_etc() {   # $1 = host: a fresh copy of the machine's sysctl configuration and TuneD folder
    local etc=$FLEET/$1/etc
    rm -rf "$etc"
    install -d -m 0755 -o root -g root "$etc"
    cp -a /etc/sysctl.d "$etc/sysctl.d" 2>/dev/null || install -d -m 0755 "$etc/sysctl.d"
    if [[ -f /etc/sysctl.conf ]]; then cp -a /etc/sysctl.conf "$etc/sysctl.conf"; fi
    if [[ -d /etc/tuned ]]; then cp -a /etc/tuned "$etc/tuned"; fi
}
