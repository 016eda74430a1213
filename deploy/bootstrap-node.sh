#!/usr/bin/env bash
# Prepare a real Linux host (VM or server) for tunefleet: the tools a tuning host needs, and
# optionally a PostgreSQL server with a pgbench database and a dedicated tuning user.
# Runs on openEuler, CentOS, RHEL, Rocky/Alma, Fedora (dnf or yum) and Debian/Ubuntu (apt).
# Idempotent: safe to run again. See deploy/README.md, "Bootstrapping a real host".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUDOERS_SRC=$HERE/sudoers.d/tunefleet
SUDOERS_DST=/etc/sudoers.d/tunefleet
AGENT_DIR=/usr/local/lib/tunefleet   # the sudo rule runs $AGENT_DIR/agent.pyz, root-owned
PG_ROLE=pgbench      # the benchmark's login role and database (not a superuser)
PG_DB=pgbench

usage() {
    cat <<EOF
usage: sudo $0 [--postgres [--scale N]] [--servers] [--user NAME --pubkey FILE]

Installs python3 (the agent runs on the system interpreter, /usr/bin/python3 >= 3.7),
sysbench, ab (httpd-tools / apache2-utils) and tc (iproute2 / iproute-tc: the agent's emulated
links, link_up, need it).

  --postgres        also install the PostgreSQL server and pgbench, start it (enabled at boot
                    where systemd runs), and create a role and database '$PG_ROLE' filled by
                    'pgbench -i -s N'. The role gets trust access to that database from the
                    local socket and 127.0.0.1/::1 only, so a benchmark runs as
                        pgbench -h 127.0.0.1 -U $PG_ROLE -c 8 -j 2 -T 30 $PG_DB
  --scale N         pgbench scale factor for --postgres (default 5, ~75 MB)
  --servers         also install what the built-in workloads on real services run: nginx, Redis
                    (with redis-benchmark), wrk and fio (tunefleet starts its own instances of
                    them on their own ports; nothing is enabled or started here). The PostgreSQL
                    workloads need the server binaries of --postgres (or the package alone).
  --user NAME       create the tuning user NAME (if missing; shell /bin/bash), install the
                    sudoers drop-in that lets it start the tunefleet agent, and only the agent,
                    as root (from $SUDOERS_SRC), and make the agent's root-owned folder
                    $AGENT_DIR. The agent itself comes from the workstation, as root or
                    an administrator with sudo (never as NAME, whose rule cannot install):
                        tunefleet install --hosts INVENTORY --limit HOST --user admin
  --pubkey FILE     with --user: an SSH public key to add to NAME's ~/.ssh/authorized_keys
  -h, --help        this text

Copy the whole deploy/ folder to the host first, e.g.
  scp -r deploy ~/.ssh/tunefleet_ed25519.pub admin@vm:/tmp/
  ssh -t admin@vm sudo /tmp/deploy/bootstrap-node.sh --postgres --user tuner --pubkey /tmp/tunefleet_ed25519.pub
EOF
}

say() { printf 'bootstrap: %s\n' "$*"; }
warn() { printf 'bootstrap: warning: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

postgres=0 scale=5 user="" pubkey="" SERVERS=0
while (( $# )); do
    case $1 in
        --postgres) postgres=1 ;;
        --servers) SERVERS=1 ;;
        --scale) [[ $# -ge 2 ]] || die "--scale needs a number"; scale=$2; shift ;;
        --user) [[ $# -ge 2 ]] || die "--user needs a name"; user=$2; shift ;;
        --pubkey) [[ $# -ge 2 ]] || die "--pubkey needs a file"; pubkey=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

[[ $EUID -eq 0 ]] || die "must run as root (it installs packages); try: sudo $0 $*"
[[ $scale =~ ^[1-9][0-9]*$ ]] || die "--scale must be a positive number, got '$scale'"
if [[ -n $user ]]; then
    [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "--user: '$user' is not a valid user name"
    [[ $user != root ]] || die "--user root: root needs no sudoers rule; use a dedicated tuning user"
    [[ -z $pubkey || -r $pubkey ]] || die "--pubkey: cannot read '$pubkey'"
    [[ -r $SUDOERS_SRC ]] || die "$SUDOERS_SRC not found: copy the whole deploy/ folder, not just this script"
elif [[ -n $pubkey ]]; then
    die "--pubkey needs --user"
fi

# ---------------------------------------------------------------------------- package manager
if command -v apt-get >/dev/null 2>&1; then
    family=debian
elif command -v dnf >/dev/null 2>&1; then
    family=redhat pm=dnf
elif command -v yum >/dev/null 2>&1; then
    family=redhat pm=yum
else
    die "no apt-get, dnf or yum found: install python3, sysbench, ab (and PostgreSQL) by hand"
fi
distro=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"' || true)
say "$distro: using ${pm:-apt-get}"

apt_updated=0
install_pkgs() {   # install what exists; returns 1 if some package could not be installed
    if [[ $family == debian ]]; then
        if (( ! apt_updated )); then apt-get update -qq; apt_updated=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        # Names like /usr/bin/pgbench are resolved to whatever package provides them.
        "$pm" install -y -q "$@" >/dev/null
    fi
}

try_install() {   # $1 = what (for messages), $2 = a hint or "", rest = packages; warns instead of failing
    local what=$1 hint=$2
    shift 2
    install_pkgs "$@" || { warn "could not install $what ($*)${hint:+; $hint}"; return 1; }
}

# ---------------------------------------------------------------------------- tools
if [[ $family == debian ]]; then
    install_pkgs python3 sudo || die "could not install python3 and sudo"
    try_install sysbench "" sysbench || true
    try_install ab "" apache2-utils || true
    try_install tc "" iproute2 || true
    if (( SERVERS )); then
        try_install "the servers of the built-in workloads" "" nginx-light redis-server redis-tools wrk fio || true
    fi
else
    install_pkgs python3 sudo || die "could not install python3 and sudo"
    # sysbench is in openEuler's and Fedora's repositories; RHEL/CentOS/Rocky need EPEL.
    try_install sysbench "on RHEL/CentOS/Rocky enable EPEL first ($pm install epel-release)" sysbench || true
    try_install ab "" httpd-tools || true
    # tc is in iproute-tc on RHEL 8+/Fedora, in iproute itself elsewhere: ask for the file.
    command -v tc >/dev/null 2>&1 || try_install tc "" /usr/sbin/tc || true
    if (( SERVERS )); then
        # wrk is in openEuler's and Fedora's repositories; RHEL/CentOS/Rocky need EPEL.
        try_install "the servers of the built-in workloads" "on RHEL/CentOS/Rocky enable EPEL first" nginx redis fio || true
        try_install wrk "on RHEL/CentOS/Rocky enable EPEL first" wrk || true
    fi
fi

[[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 is missing after the install; the agent and the sudoers rule use that path"
if ! /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 7))'; then
    warn "/usr/bin/python3 is $(/usr/bin/python3 -V 2>&1); the agent needs Python >= 3.7"
fi

# ---------------------------------------------------------------------------- PostgreSQL
has_systemd() { [[ -d /run/systemd/system ]]; }

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_wait() {   # bounded wait until the server answers on its socket
    local n
    for ((n = 0; n < 60; n++)); do
        as_postgres psql -qAtX -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

pg_setup_debian() {
    install_pkgs postgresql postgresql-client || die "could not install postgresql"
    local ver
    ver=$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1 | cut -d/ -f5)
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$ver main"; then
        pg_createcluster "$ver" main >/dev/null
    fi
    if has_systemd; then
        systemctl enable --now "postgresql@$ver-main" >/dev/null 2>&1 || systemctl enable --now postgresql >/dev/null
    else
        pg_ctlcluster "$ver" main start 2>/dev/null || true   # already running is fine
    fi
}

pg_setup_redhat() {
    install_pkgs postgresql-server postgresql || die "could not install postgresql-server"
    # pgbench lives in postgresql-contrib on some releases and its own package on others.
    command -v pgbench >/dev/null 2>&1 || install_pkgs /usr/bin/pgbench || die "could not install pgbench"
    local data=/var/lib/pgsql/data
    if [[ ! -f $data/PG_VERSION ]]; then
        # RHEL 8+/Fedora/openEuler: --initdb; CentOS 7: initdb; else initdb by hand.
        postgresql-setup --initdb >/dev/null 2>&1 || postgresql-setup initdb >/dev/null 2>&1 \
            || { install -d -m 0700 -o postgres -g postgres "$data" && as_postgres initdb -D "$data" >/dev/null; } \
            || die "initdb failed"
    fi
    if has_systemd; then
        systemctl enable --now postgresql >/dev/null
    elif ! as_postgres pg_ctl -D "$data" status >/dev/null 2>&1; then
        as_postgres pg_ctl -D "$data" -l /var/lib/pgsql/logfile start -w >/dev/null
    fi
}

pg_benchmark_db() {
    local hba marker="# tunefleet: the benchmark role, local only"
    # Fill the database only when it is new: pgbench -i drops and re-creates the tables.
    if [[ -z $(as_postgres psql -qAtX -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'") ]]; then
        as_postgres psql -qX -c "CREATE ROLE $PG_ROLE LOGIN"
    fi
    hba=$(as_postgres psql -qAtX -c 'SHOW hba_file')
    if ! grep -qF "$marker" "$hba"; then
        # First matching line wins: these go on top. Trust for one unprivileged role on one
        # database, from this host only; everything else keeps the distribution's rules.
        local tmp
        tmp=$(mktemp)
        {
            echo "$marker"
            echo "local $PG_DB $PG_ROLE                trust"
            echo "host  $PG_DB $PG_ROLE 127.0.0.1/32   trust"
            echo "host  $PG_DB $PG_ROLE ::1/128        trust"
            cat "$hba"
        } >"$tmp"
        cat "$tmp" >"$hba"   # keep the file's owner, mode and SELinux label
        rm -f "$tmp"
        as_postgres psql -qAtX -c 'SELECT pg_reload_conf()' >/dev/null
    fi
    if [[ -z $(as_postgres psql -qAtX -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        as_postgres psql -qX -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
        say "filling database $PG_DB (pgbench -i -s $scale)"
        as_postgres pgbench -i -q -s "$scale" -U "$PG_ROLE" "$PG_DB" >/dev/null 2>&1 \
            || die "pgbench -i failed"
    else
        say "database $PG_DB exists: left as it is (re-fill with: pgbench -i -s $scale -h 127.0.0.1 -U $PG_ROLE $PG_DB)"
    fi
    # The same check a benchmark would do, over TCP.
    pgbench -h 127.0.0.1 -U "$PG_ROLE" -c 2 -T 1 "$PG_DB" >/dev/null 2>&1 \
        || die "pgbench -h 127.0.0.1 -U $PG_ROLE $PG_DB does not work; check $hba"
}

if (( postgres )); then
    if [[ $family == debian ]]; then pg_setup_debian; else pg_setup_redhat; fi
    pg_wait || die "PostgreSQL did not come up within 30 s"
    pg_benchmark_db
    say "PostgreSQL ready: pgbench -h 127.0.0.1 -U $PG_ROLE $PG_DB"
fi

# ---------------------------------------------------------------------------- tuning user
if [[ -n $user ]]; then
    if ! id "$user" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash --comment "tunefleet tuning user" "$user"
        say "created user $user"
    fi
    # A locked password ('!' or '!!') blocks key logins where sshd runs without PAM; '*' means
    # "no password" without the lock.
    if [[ $(getent shadow "$user" | cut -d: -f2) == '!'* ]]; then usermod -p '*' "$user"; fi
    home=$(getent passwd "$user" | cut -d: -f6)
    group=$(id -gn "$user")
    install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"
    if [[ -n $pubkey ]]; then
        key=$(grep -vE '^\s*(#|$)' "$pubkey" | head -n 1)
        [[ $key =~ ^(ssh-|ecdsa-|sk-) ]] || die "$pubkey does not look like an SSH public key"
        touch "$home/.ssh/authorized_keys"
        grep -qxF "$key" "$home/.ssh/authorized_keys" || echo "$key" >>"$home/.ssh/authorized_keys"
        chown "$user:$group" "$home/.ssh/authorized_keys"
        chmod 0600 "$home/.ssh/authorized_keys"
        if command -v restorecon >/dev/null 2>&1; then restorecon -R "$home/.ssh" || true; fi
        say "authorized $pubkey for $user"
    fi
    tmp=$(mktemp)
    sed -e "s/\btfuser\b/$user/g" "$SUDOERS_SRC" >"$tmp"
    visudo -cqf "$tmp" || { rm -f "$tmp"; die "the rendered sudoers drop-in does not pass visudo -c"; }
    install -m 0440 -o root -g root "$tmp" "$SUDOERS_DST"
    rm -f "$tmp"
    visudo -cq || die "sudo's configuration is broken after installing $SUDOERS_DST"
    # The folder sudo runs the agent from: root's alone, as is every folder above it.
    install -d -m 0755 -o root -g root "$AGENT_DIR"
    chown root:root "$AGENT_DIR"
    chmod 0755 "$AGENT_DIR"
    d=$AGENT_DIR
    while [[ $d != / ]]; do
        d=$(dirname "$d")
        read -r mode owner < <(stat -c '%a %u' "$d")
        [[ $owner == 0 ]] && (( (8#$mode & 8#022) == 0 )) \
            || die "$d is not root-owned or is writable by others: the agent under it would not be root's alone"
    done
    say "installed $SUDOERS_DST: $user may run exactly '/usr/bin/python3 -I $AGENT_DIR/agent.pyz' as root"
    if [[ ! -f $AGENT_DIR/agent.pyz ]]; then
        say "next, from the workstation: tunefleet install --hosts INVENTORY --limit THIS_HOST --user ADMIN_OR_ROOT"
    fi
fi

say "done. Tools: $(for t in python3 sysbench ab pgbench psql nginx redis-server redis-benchmark wrk fio; do
    if command -v "$t" >/dev/null 2>&1; then printf '%s ' "$t"; else printf '%s(missing) ' "$t"; fi
done)"
