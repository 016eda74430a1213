#!/usr/bin/env bash
# Bring up the local fleet: N SSH hosts on this machine, each one a network namespace with
# its own address, hostname, sshd, private ~/.tunefleet and (PG=1) PostgreSQL server.
#
#   HOSTS=3 PG=1 deploy/fleet-up.sh        (as root; defaults HOSTS=3 PG=1)
#   BASTION=1 deploy/fleet-up.sh           ... plus jump hosts and targets reachable only through them
#   FLEET_NAME=big FLEET_NET=10.87.90 HOSTS=64 PG=0 deploy/fleet-up.sh
#                                          a second fleet beside the default one (deploy/fleet-name.sh)
#
# Idempotent: a fleet that is already up is taken down first (deploy/fleet-down.sh).
# Keys, host keys and PostgreSQL data dirs under deploy/.fleet/ are kept between runs.
# See deploy/README.md for the address plan and what this changes on the machine.
set -euo pipefail

HOSTS=${HOSTS:-3}
PG=${PG:-1}
BASTION=${BASTION:-0}
# QUICKACK=1 (default): the fleet route ACKs at once instead of after the 40 ms delayed-ACK
# timer, here and inside each host. An OpenSSH exec without a tty runs with Nagle on, and
# twice per connection a small packet waits for the peer's delayed ACK: ~150 ms per fresh
# `ssh host true` instead of ~55 ms. Only traffic on the fleet net is affected; benchmarks on
# a host's loopback are not. QUICKACK=0 gives the delayed ACKs of a real network (a client
# without TCP_NODELAY then pays ~45 ms per exec, as it would against real hosts).
QUICKACK=${QUICKACK:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASTION_INVENTORY=$ROOT/inventory/local-bastion.yml
SUDOERS_SRC=$ROOT/deploy/sudoers.d/tunefleet
SUDOERS_DST=/etc/sudoers.d/tunefleet-fleet   # not "tunefleet": a real bootstrap of this machine may own that one

# BASTION=1: two private nets that only the jump hosts reach. The root namespace has no
# address on them and routes them as unreachable, so a direct connection fails at once and no
# packet for them leaves the machine; nothing is forwarded: a jump is an SSH direct-tcpip
# channel opened by the jump host's sshd.
#   j1 = $NET.241 on $BRIDGE and $PNET1.1 on tfbr1;  j2 = $PNET1.2 on tfbr1 and $PNET2.1 on tfbr2
#   p1 = $PNET1.11 (one hop: j1);                    p2 = $PNET2.11 (two hops: j1, j2)
PNET1=10.87.78
PNET2=10.87.79
BASTION_HOSTS=(j1 j2 p1 p2)

say() { printf 'fleet-up: %s\n' "$*"; }
die() { printf 'fleet-up: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/fleet-name.sh
. "$ROOT/deploy/fleet-name.sh"   # PREFIX, NET, BRIDGE, FLEET, INVENTORY (FLEET_NAME, FLEET_NET)
# shellcheck source=deploy/fleet-host.sh
. "$ROOT/deploy/fleet-host.sh"   # TFUSER, CLEAN_ENV, SSH_WAIT_S; net_host, start_sshd, start_pg, ...

usage() {
    cat <<EOF
usage: [HOSTS=N] [PG=0|1] [QUICKACK=0|1] [BASTION=0|1] [FLEET_NAME=x FLEET_NET=a.b.c] $0

Creates HOSTS (default 3) SSH hosts from network namespaces $PREFIX-h1..$PREFIX-hN on bridge $BRIDGE
($NET.1/24; host i at $NET.\$((10+i))), each with sshd on port 22 and, with PG=1 (default),
PostgreSQL on port 5432 with a 'pgbench' database (scale 5). Writes inventory/local.yml.
BASTION=1 adds jump hosts tf-j1, tf-j2 and targets tf-p1 (behind j1) and tf-p2 (behind j1
and j2) on private bridges tfbr1/tfbr2 ($PNET1.0/24, $PNET2.0/24), writes
deploy/.fleet/ssh_config (ProxyJump) and inventory/local-bastion.yml.
FLEET_NAME=x FLEET_NET=a.b.c brings up another fleet beside the default one: namespaces
tfx-h1.., bridge tfxbr0 on a.b.c.0/24, deploy/.fleet-x, inventory/local-x.yml (no bastion; the
tuning user's sudo rule and installed agent are the default fleet's).
Run as root. Undo with [FLEET_NAME=x] deploy/fleet-down.sh [--purge].
EOF
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) usage >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------- checks
[[ $EUID -eq 0 ]] || die "must run as root (it creates network namespaces, mounts and daemons); try: sudo $0"
if ! [[ $HOSTS =~ ^[0-9]+$ ]] || (( HOSTS < 1 || HOSTS > 200 )); then
    die "HOSTS must be a number from 1 to 200, got '$HOSTS'"
fi
[[ $PG == 0 || $PG == 1 ]] || die "PG must be 0 or 1, got '$PG'"
[[ $QUICKACK == 0 || $QUICKACK == 1 ]] || die "QUICKACK must be 0 or 1, got '$QUICKACK'"
[[ $BASTION == 0 || $BASTION == 1 ]] || die "BASTION must be 0 or 1, got '$BASTION'"
if [[ -n $FLEET_NAME ]]; then
    [[ $NET =~ ^(10\.[0-9]{1,3}|192\.168)\.[0-9]{1,3}$ ]] \
        || die "FLEET_NAME=$FLEET_NAME needs FLEET_NET, a private /24 of its own as its first three numbers (e.g. FLEET_NET=10.87.90), got '$NET'"
    (( ! BASTION )) || die "BASTION=1 is for the default fleet only"
fi
ROUTE_OPTS=()
if (( QUICKACK )); then ROUTE_OPTS=(quickack 1); fi

need() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    (( ${#missing[@]} == 0 )) || die "missing tool(s): ${missing[*]} (Debian/Ubuntu: make setup, or apt-get install openssh-server iproute2 util-linux passwd)"
}
need ip unshare nsenter setsid runuser timeout hostname ssh ssh-keygen useradd usermod install
SSHD=$(command -v sshd || true)
[[ -n $SSHD ]] || SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "sshd not found (apt-get install openssh-server)"

if (( PG )); then
    # Prefer pg_config's answer; Debian also keeps versioned trees in /usr/lib/postgresql.
    PGBIN=${PGBIN:-}
    if [[ -z $PGBIN ]] && command -v pg_config >/dev/null 2>&1; then PGBIN=$(pg_config --bindir); fi
    if [[ -z $PGBIN || ! -x $PGBIN/initdb ]]; then
        PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    for t in initdb pg_ctl postgres psql pgbench; do
        [[ -n $PGBIN && -x $PGBIN/$t ]] || die "PostgreSQL tool '$t' not found (apt-get install postgresql postgresql-client), or run with PG=0"
    done
    id postgres >/dev/null 2>&1 || die "no 'postgres' user (it comes with the postgresql package)"
    PG_MAJOR=$("$PGBIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
fi

# Daemons started below (PostgreSQL above all: pg_ctl keeps every descriptor it is given) must
# not inherit the caller's open files: under `flock LOCK deploy/fleet-up.sh` they would hold
# the lock for as long as they run. The caller keeps its own copy; only ours are closed.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if (( fd > 2 && fd != 255 )); then eval "exec $fd>&-"; fi
done

# ---------------------------------------------------------------------------- start clean
"$ROOT/deploy/fleet-down.sh" --quiet

for net in "$NET" $( (( BASTION )) && echo "$PNET1 $PNET2"); do
    if [[ -n $(ip -4 route show "$net.0/24") ]]; then
        die "$net.0/24 is already routed on this machine ($(ip -4 route show "$net.0/24")); the fleet needs that range for itself"
    fi
done

T0=$(date +%s%N)
# From here on a failure takes down what was started, so no half fleet stays behind; the
# logs under deploy/.fleet/ remain for a look.
on_exit() {
    local rc=$?
    if (( rc != 0 )); then
        echo "fleet-up: failed; taking down what was started (logs: $FLEET/h*/)" >&2
        "$ROOT/deploy/fleet-down.sh" --quiet >&2 || true
    fi
}
trap on_exit EXIT
mkdir -p /run/sshd
chmod 0755 /run/sshd
install -d -m 0755 -o root -g root "$FLEET" "$FLEET/authorized_keys"

# The folders above deploy/.fleet: postgres (data dirs) and tfuser (sshd reads authorized_keys
# as the user) must be able to pass through them, so add o+x where it is missing (e.g. a
# clone under /root). sshd's StrictModes also wants them root-owned and not group- or
# world-writable; a clone under /tmp is neither, and then the fleet's sshds run with
# StrictModes off (key-only logins, a throw-away test fleet) rather than fail.
STRICT_MODES=yes
d=$FLEET
while [[ $d != / ]]; do
    d=$(dirname "$d")
    read -r mode owner < <(stat -c '%a %u' "$d")
    if (( (8#$mode & 1) == 0 )); then
        chmod o+x "$d"
        say "made $d traversable (o+x) for postgres and $TFUSER"
    fi
    if [[ $owner != 0 ]] || (( 8#$mode & 8#022 )); then
        [[ $STRICT_MODES == no ]] || say "$d is not a root-owned, non-writable folder: sshd runs with StrictModes no"
        STRICT_MODES=no
    fi
done

# ---------------------------------------------------------------------------- users, keys
if ! id "$TFUSER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --comment "tunefleet fleet user" "$TFUSER"
    touch "$FLEET/created-$TFUSER"   # fleet-down --purge deletes the account only when we made it
    say "created user $TFUSER"
fi
[[ $(getent passwd "$TFUSER" | cut -d: -f7) == /bin/bash ]] || usermod --shell /bin/bash "$TFUSER"
# sshd without PAM refuses even key logins to a locked account ('!' password): '*' = no
# password, not locked.
if [[ $(getent shadow "$TFUSER" | cut -d: -f2) == '!'* ]]; then usermod -p '*' "$TFUSER"; fi
TF_UID=$(id -u "$TFUSER"); TF_GID=$(id -g "$TFUSER")
TF_HOME=$(getent passwd "$TFUSER" | cut -d: -f6)

# Mount points for the per-host tmpfs state folders. They must exist on the real filesystem;
# inside each host they are covered by a private tmpfs, here they stay empty.
install -d -m 0700 /root/.tunefleet
install -d -m 0700 -o "$TFUSER" -g "$TF_GID" "$TF_HOME/.tunefleet"

[[ -f $FLEET/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "tunefleet-local-fleet" -f "$FLEET/id_ed25519"
# authorized_keys live in a root-owned 0755 folder: sshd's StrictModes accepts that path.
for u in root "$TFUSER"; do
    install -m 0644 -o root -g root "$FLEET/id_ed25519.pub" "$FLEET/authorized_keys/$u"
done
# An empty rc file, bind-mounted over ~/.bashrc inside the hosts: root's bashrc on dev
# machines may run pyenv init (~75 ms on every SSH exec).
install -m 0644 -o root -g root /dev/null "$FLEET/empty-rc"

# Let tfuser start the agent (and only the agent) as root, to exercise the non-root path.
if [[ -n $FLEET_NAME ]]; then
    :   # the default fleet's drop-in serves every fleet; only its fleet-down --purge removes it
elif command -v sudo >/dev/null 2>&1 && command -v visudo >/dev/null 2>&1; then
    tmp=$(mktemp)
    sed -e "s/\btfuser\b/$TFUSER/g" "$SUDOERS_SRC" >"$tmp"
    visudo -cqf "$tmp" || { rm -f "$tmp"; die "$SUDOERS_SRC does not pass visudo -c"; }
    install -m 0440 -o root -g root "$tmp" "$SUDOERS_DST"
    rm -f "$tmp"
else
    say "sudo not installed: $TFUSER cannot start the agent as root (apt-get install sudo)"
fi

# ---------------------------------------------------------------------------- PostgreSQL template
# initdb + pgbench -i once into a template; new host data dirs are copies of it (a copy of
# a cleanly stopped cluster takes a fraction of a second, initdb + pgbench -i several).
# Bump when the template's contents change: existing templates and data dirs are re-made.
TEMPLATE_VERSION=2   # 2: role pgbench owns the pgbench database
pg_template() {
    local tpl=$FLEET/pg-template tmp sock
    if [[ -f $tpl/PG_VERSION && $(cat "$tpl/PG_VERSION") == "$PG_MAJOR" ]] \
        && [[ $(cat "$tpl/fleet-template" 2>/dev/null) == "$TEMPLATE_VERSION" ]]; then
        return
    fi
    rm -rf "$tpl" "$tpl.tmp"
    say "building the PostgreSQL $PG_MAJOR template (initdb, pgbench -i -s 5; once)"
    tmp=$tpl.tmp
    install -d -m 0700 -o postgres -g postgres "$tmp"
    install -m 0644 -o postgres -g postgres /dev/null "$FLEET/pg-template.log"   # pg_ctl -l writes as postgres
    runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/initdb" -D "$tmp" -U postgres --auth=trust \
        -E UTF8 --locale=C.UTF-8 >"$FLEET/pg-template.log" 2>&1 \
        || die "initdb failed, see $FLEET/pg-template.log"
    cat >"$tmp/pg_hba.conf" <<EOF
# written by deploy/fleet-up.sh: a throw-away test fleet, trust on loopback and the fleet net only
local all all                trust
host  all all 127.0.0.1/32   trust
host  all all ::1/128        trust
host  all all $NET.0/24  trust
EOF
    cat >>"$tmp/postgresql.conf" <<'EOF'

# deploy/fleet-up.sh: per-host settings (addresses, sizes) are rewritten on every fleet-up
include_if_exists = 'fleet.conf'
EOF
    chown postgres:postgres "$tmp/pg_hba.conf" "$tmp/postgresql.conf"
    # Served on a private unix socket only (no TCP) while pgbench fills it.
    sock=$(mktemp -d /tmp/tf-pgtpl.XXXXXX)
    chown postgres "$sock"
    runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/pg_ctl" start -w -t 30 -D "$tmp" -l "$FLEET/pg-template.log" \
        -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c fsync=off" >/dev/null </dev/null \
        || die "template server did not start, see $FLEET/pg-template.log"
    local ok=1
    # Role and database 'pgbench' as deploy/bootstrap-node.sh makes them on real hosts, so one
    # benchmark command (pgbench -h 127.0.0.1 -U pgbench ... pgbench) works on both; here the
    # superuser postgres may connect too.
    runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/psql" -qX -h "$sock" -U postgres \
        -c 'CREATE ROLE pgbench LOGIN' -c 'CREATE DATABASE pgbench OWNER pgbench' postgres \
        >>"$FLEET/pg-template.log" 2>&1 \
      && runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/pgbench" -i -s 5 -q -h "$sock" -U pgbench pgbench \
        >>"$FLEET/pg-template.log" 2>&1 \
      || ok=0
    echo "$TEMPLATE_VERSION" >"$tmp/fleet-template"
    # A clean shutdown (checkpoint) makes the data dir safe to copy.
    runuser -u postgres -- "${CLEAN_ENV[@]}" "$PGBIN/pg_ctl" stop -w -t 30 -m fast -D "$tmp" >/dev/null </dev/null || ok=0
    rm -rf "$sock"
    (( ok )) || die "pgbench -i failed in the template, see $FLEET/pg-template.log"
    mv "$tmp" "$tpl"
}

pg_datadir() {   # $1 = host index: make sure h$i/pgdata exists and is current
    local i=$1 d=$FLEET/h$1/pgdata
    if [[ -f $d/PG_VERSION && $(cat "$d/PG_VERSION") != "$PG_MAJOR" ]]; then
        say "h$i: data dir is from PostgreSQL $(cat "$d/PG_VERSION"), binaries are $PG_MAJOR: re-creating it"
        rm -rf "$d"
    fi
    if [[ -f $d/PG_VERSION && $(cat "$d/fleet-template" 2>/dev/null) != "$TEMPLATE_VERSION" ]]; then
        say "h$i: data dir is from an older fleet template: re-creating it"
        rm -rf "$d"
    fi
    if [[ ! -f $d/PG_VERSION ]]; then
        rm -rf "$d" "$d.tmp"
        cp -a "$FLEET/pg-template" "$d.tmp"
        mv "$d.tmp" "$d"
    fi
    clear_stale_pid "$d"   # fleet-down has stopped every postgres of ours by now
    [[ -f $FLEET/h$i/postgres.log ]] || install -m 0644 -o postgres -g postgres /dev/null "$FLEET/h$i/postgres.log"
    cat >"$d/fleet.conf" <<EOF
# written by deploy/fleet-up.sh on every run
listen_addresses = '127.0.0.1,$NET.$((10 + i))'
port = 5432
unix_socket_directories = '/run/postgresql'   # a private tmpfs inside host h$i
shared_buffers = 64MB
max_connections = 100
fsync = on
EOF
    chown postgres:postgres "$d/fleet.conf"
}

if (( PG )); then
    # Mount point for each host's private socket dir (the package normally creates it).
    [[ -d /run/postgresql ]] || install -d -m 2775 -o postgres -g postgres /run/postgresql
    pg_template
fi

# ---------------------------------------------------------------------------- network
ip link add "$BRIDGE" type bridge
ip addr add "$NET.1/24" dev "$BRIDGE"
# Keep the fleet net IPv4-only (no link-local IPv6 chatter), only if IPv6 exists at all.
if [[ -e /proc/sys/net/ipv6/conf/$BRIDGE/disable_ipv6 ]]; then echo 1 >"/proc/sys/net/ipv6/conf/$BRIDGE/disable_ipv6"; fi
ip link set "$BRIDGE" up
ip route replace "$NET.0/24" dev "$BRIDGE" proto kernel scope link src "$NET.1" "${ROUTE_OPTS[@]}"

write_host_files() {   # $1 = host (h3, j1, ...), $2 = address sshd listens on, $3 = AllowTcpForwarding
    local h=$1 name=$PREFIX-$1 ip=$2 forwarding=$3 dir=$FLEET/$1 j
    install -d -m 0755 -o root -g root "$dir"
    if [[ ! -f $dir/ssh_host_ed25519_key ]]; then
        ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
    fi
    cat >"$dir/sshd_config" <<EOF
# written by deploy/fleet-up.sh for fleet host $h ($name, $ip)
ListenAddress $ip:22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $FLEET/authorized_keys/%u
AllowUsers root $TFUSER
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
UseDNS no
StrictModes $STRICT_MODES
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding $forwarding
PermitTunnel no
# Tests and parallel rollouts open many connections at once.
MaxStartups 100:30:200
MaxSessions 64
Subsystem sftp internal-sftp
# OpenSSH's default key exchange (sntrup761x25519) costs ~200 ms of CPU per connection on a
# small CI machine; curve25519 ~10 ms. ecdh-nistp256 kept for older clients.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256
LogLevel INFO
EOF
    {
        echo "# written by deploy/fleet-up.sh: /etc/hosts inside fleet host $h"
        echo "127.0.0.1 localhost"
        echo "::1 localhost ip6-localhost ip6-loopback"
        echo "$NET.1 $PREFIX-gw"
        for ((j = 1; j <= HOSTS; j++)); do echo "$NET.$((10 + j)) $PREFIX-h$j"; done
        if (( BASTION )); then
            echo "$NET.241 tf-j1"; echo "$PNET1.2 tf-j2"; echo "$PNET1.11 tf-p1"; echo "$PNET2.11 tf-p2"
        fi
    } >"$dir/hosts"
    chmod 0644 "$dir/hosts"
    rm -f "$dir/sshd.pid"
    host_etc "$h"   # a fresh install: the machine's sysctl configuration, the host's from now on
}

for ((i = 1; i <= HOSTS; i++)); do
    write_host_files "h$i" "$NET.$((10 + i))" no
    net_host "h$i" "$BRIDGE" "$NET.$((10 + i))"
    start_sshd "h$i"
done
if (( BASTION )); then
    for br in tfbr1 tfbr2; do
        ip link add "$br" type bridge
        if [[ -e /proc/sys/net/ipv6/conf/$br/disable_ipv6 ]]; then echo 1 >"/proc/sys/net/ipv6/conf/$br/disable_ipv6"; fi
        ip link set "$br" up
    done
    ip route add unreachable "$PNET1.0/24"
    ip route add unreachable "$PNET2.0/24"
    write_host_files j1 "$NET.241" local
    write_host_files j2 "$PNET1.2" local
    write_host_files p1 "$PNET1.11" no
    write_host_files p2 "$PNET2.11" no
    net_host j1 "$BRIDGE" "$NET.241" tfbr1 "$PNET1.1"
    net_host j2 tfbr1 "$PNET1.2" tfbr2 "$PNET2.1"
    net_host p1 tfbr1 "$PNET1.11"
    net_host p2 tfbr2 "$PNET2.11"
    for h in "${BASTION_HOSTS[@]}"; do start_sshd "$h"; done
fi

# ---------------------------------------------------------------------------- PostgreSQL per host
if (( PG )); then
    for ((i = 1; i <= HOSTS; i++)); do pg_datadir "$i"; done
    # pg_ctl start -w takes a few hundred ms: start all hosts at once.
    pids=()
    for ((i = 1; i <= HOSTS; i++)); do start_pg "$i" & pids+=($!); done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    (( failed == 0 )) || die "PostgreSQL failed on some host(s)"
fi

# ---------------------------------------------------------------------------- known_hosts, inventory
{
    for ((i = 1; i <= HOSTS; i++)); do
        printf '%s %s\n' "$NET.$((10 + i))" "$(cut -d' ' -f1,2 "$FLEET/h$i/ssh_host_ed25519_key.pub")"
    done
    if (( BASTION )); then
        for h in "${BASTION_HOSTS[@]}"; do
            printf '%s %s\n' "$(sed -nE 's/^ListenAddress (.*):22$/\1/p' "$FLEET/$h/sshd_config")" \
                "$(cut -d' ' -f1,2 "$FLEET/$h/ssh_host_ed25519_key.pub")"
        done
    fi
} >"$FLEET/known_hosts"
chmod 0644 "$FLEET/known_hosts"

mkdir -p "$(dirname "$INVENTORY")"
{
    echo "# written by deploy/fleet-up.sh — the local fleet${FLEET_NAME:+ '$FLEET_NAME'} (network namespaces on this machine)"
    echo "defaults:"
    echo "  user: root"
    echo "  key: $FLEET/id_ed25519"
    echo "  known_hosts: $FLEET/known_hosts"
    echo "hosts:"
    for ((i = 1; i <= HOSTS; i++)); do echo "  h$i: {host: $NET.$((10 + i)), port: 22}"; done
    names="h1"
    for ((i = 2; i <= HOSTS; i++)); do names+=", h$i"; done
    echo "groups:"
    echo "  local: [$names]"
} >"$INVENTORY.tmp"
mv "$INVENTORY.tmp" "$INVENTORY"

if (( BASTION )); then
    # What a user with a bastion has: an ssh config that says how to reach each host, and an
    # inventory that names the hosts and points at that config (ansible_ssh_common_args).
    cat >"$FLEET/ssh_config.tmp" <<EOF
# written by deploy/fleet-up.sh (BASTION=1): the local fleet's jump hosts and the targets behind them
Host tf-j1
    HostName $NET.241
Host tf-j2
    HostName $PNET1.2
    ProxyJump tf-j1
Host tf-p1
    HostName $PNET1.11
    ProxyJump tf-j1
Host tf-p2
    HostName $PNET2.11
    ProxyJump tf-j1,tf-j2
Host tf-*
    User root
    IdentityFile $FLEET/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $FLEET/known_hosts
    StrictHostKeyChecking yes
EOF
    mv "$FLEET/ssh_config.tmp" "$FLEET/ssh_config"
    cat >"$BASTION_INVENTORY.tmp" <<EOF
# written by deploy/fleet-up.sh (BASTION=1) — targets behind the local fleet's jump hosts
# (see deploy/.fleet/ssh_config: p1 through tf-j1, p2 through tf-j1 then tf-j2)
all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: $FLEET/id_ed25519
    ansible_ssh_common_args: -F $FLEET/ssh_config
  children:
    bastion:
      hosts:
        p1: {ansible_host: tf-p1}
        p2: {ansible_host: tf-p2}
EOF
    mv "$BASTION_INVENTORY.tmp" "$BASTION_INVENTORY"
elif [[ -z $FLEET_NAME ]]; then
    rm -f "$FLEET/ssh_config" "$BASTION_INVENTORY"   # from an earlier BASTION=1: those hosts are gone
fi

# ---------------------------------------------------------------------------- ready?
deadline=$(( $(date +%s) + SSH_WAIT_S ))
for ((i = 1; i <= HOSTS; i++)); do
    ip=$NET.$((10 + i))
    wait_tcp "$ip" 22 "$deadline" || die "h$i: sshd at $ip:22 does not accept connections after ${SSH_WAIT_S}s, see $FLEET/h$i/sshd.log"
done
if (( BASTION )); then
    # Each from where it can be reached: j1 from here, j2 and p1 from j1, p2 from j2.
    for hop in ":$NET.241" "tf-j1:$PNET1.2" "tf-j1:$PNET1.11" "tf-j2:$PNET2.11"; do
        ns=${hop%%:*} ip=${hop#*:}
        until ${ns:+ip netns exec "$ns"} timeout 1 bash -c "exec 3<>/dev/tcp/$ip/22" 2>/dev/null; do
            (( $(date +%s) < deadline )) || die "sshd at $ip:22 does not accept connections after ${SSH_WAIT_S}s, see $FLEET/[jp]*/sshd.log"
            sleep 0.05
        done
    done
fi

# One real login per host and user (in parallel): catches key, known_hosts and StrictModes
# problems (e.g. a group-writable folder above deploy/.fleet) here rather than in a test.
SSH=(ssh -F /dev/null -i "$FLEET/id_ed25519" -o UserKnownHostsFile="$FLEET/known_hosts" -o StrictHostKeyChecking=yes
     -o BatchMode=yes -o ConnectTimeout=5)
pids=()
for ((i = 1; i <= HOSTS; i++)); do
    for u in root "$TFUSER"; do
        "${SSH[@]}" "$u@$NET.$((10 + i))" true </dev/null >/dev/null 2>"$FLEET/h$i/login-$u.err" & pids+=($!)
    done
done
if (( BASTION )); then
    # The jumps as OpenSSH makes them, from the written ssh config: proves config, keys and
    # forwarding before any test relies on them.
    for h in p1 p2; do
        "${SSH[@]}" -F "$FLEET/ssh_config" "tf-$h" true </dev/null >/dev/null 2>"$FLEET/$h/login-root.err" & pids+=($!)
    done
fi
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if (( failed )); then
    for h in p1 p2; do
        if [[ -s $FLEET/$h/login-root.err ]]; then echo "$h root: $(tail -n 1 "$FLEET/$h/login-root.err")" >&2; fi
    done
    for ((i = 1; i <= HOSTS; i++)); do
        for u in root "$TFUSER"; do
            if [[ -s $FLEET/h$i/login-$u.err ]]; then echo "h$i $u: $(tail -n 1 "$FLEET/h$i/login-$u.err")" >&2; fi
        done
    done
    die "SSH login failed (details above and in $FLEET/h*/sshd.log; a folder above $FLEET that is group- or world-writable makes sshd refuse the keys)"
fi
# The agent that $TFUSER's sudo rule runs, installed root-owned as root over SSH (the hosts
# share this machine's /usr/local/lib, so one host installs it for all). After a change to
# node_agent/, run `tunefleet install --hosts inventory/local.yml --limit h1` again.
if [[ -n $FLEET_NAME ]]; then
    :   # the hosts of every fleet share /usr/local/lib: the default fleet's fleet-up installs it
elif [[ -x $ROOT/.venv/bin/python ]]; then
    (cd "$ROOT" && .venv/bin/python -m controller.cli install --hosts "$INVENTORY" --limit h1) >/dev/null \
        || die "tunefleet install failed: $TFUSER cannot start the agent through sudo"
else
    say "no .venv (make setup): the agent for $TFUSER's sudo rule is not installed (tunefleet install)"
fi
T1=$(date +%s%N)

for ((i = 1; i <= HOSTS; i++)); do
    line="h$i  $PREFIX-h$i  $NET.$((10 + i)):22  sshd pid $(cat "$FLEET/h$i/sshd.pid")"
    if (( PG )); then line+="  postgres :5432 pid $(head -n 1 "$FLEET/h$i/pgdata/postmaster.pid")"; fi
    echo "$line"
done
if (( BASTION )); then
    for h in "${BASTION_HOSTS[@]}"; do
        echo "$h  tf-$h  $(sed -nE 's/^ListenAddress //p' "$FLEET/$h/sshd_config")  sshd pid $(cat "$FLEET/$h/sshd.pid")"
    done
fi
say "$HOSTS host(s)$( (( BASTION )) && echo " + bastion (j1, j2, p1, p2)") up in $(( (T1 - T0) / 1000000 )) ms; inventory: $INVENTORY$( (( BASTION )) && echo ", $BASTION_INVENTORY")"
say "try: ssh -i $FLEET/id_ed25519 -o UserKnownHostsFile=$FLEET/known_hosts root@$NET.11 hostname"
