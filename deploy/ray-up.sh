#!/usr/bin/env bash
# Start a multi-node Ray cluster on this machine beside the local fleet: a head node in the root
# namespace and one worker node per network, each in its own network namespace that reaches only
# its part of the fleet. Prints the RAY_ADDRESS to use with `tunefleet ... --workers ray`.
#
#   deploy/ray-up.sh                                  (as root, after deploy/fleet-up.sh)
#   RAY_NODES="net-a=10.87.77.11,10.87.77.12 net-b=10.87.77.13" deploy/ray-up.sh
#
# Worker node i is namespace tf-ray<i> at 10.87.77.(200+i) on the fleet bridge, with a /32 address
# and /32 routes to the head and to its own hosts only: any other fleet address is unreachable from
# it. It offers the custom resource named before '=' (ray start --resources), which a host asks for
# with `tunefleet_ray_resource: net-a` (Ansible inventories) or `ray_resource: net-a` (tunefleet's own
# format). The head offers no CPU and no network resource, so pinned actors never land on it.
# Each node keeps its Ray session files in a tmpfs of its own mount namespace. Undo: deploy/ray-down.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RAY=${RAY:-$ROOT/.venv/bin/ray}
BRIDGE=tfbr0
NET=10.87.77
HEAD_IP=$NET.1
PORT=${RAY_PORT:-6379}
RAY_NODES=${RAY_NODES:-"net-a=$NET.11,$NET.12 net-b=$NET.13"}
TMP=/tmp/tunefleet-ray   # the head's session files; each worker mounts its own tmpfs here
LOG=$TMP.log             # what `ray start` says
# Ray's daemons get a small environment and no usage reporting. Authentication is off on
# purpose and said so (Ray would otherwise switch it on for whoever has ~/.ray/auth_token, and a
# worker without the token could not join): the cluster listens only on the fleet bridge, a
# private /24 that never leaves this machine.
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
           HOME=/root RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled)

say() { printf 'ray-up: %s\n' "$*"; }
die() { printf 'ray-up: error: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"
[[ -x $RAY ]] || die "$RAY not found: run make setup"
ip link show "$BRIDGE" >/dev/null 2>&1 || die "the local fleet is not up ($BRIDGE missing): run deploy/fleet-up.sh"
"$ROOT/deploy/ray-down.sh" --quiet

mkdir -p "$TMP"
say "head at $HEAD_IP:$PORT"
"${CLEAN_ENV[@]}" "$RAY" start --head --node-ip-address="$HEAD_IP" --port="$PORT" --num-cpus=0 \
    --include-dashboard=false --disable-usage-stats --temp-dir="$TMP" >"$LOG" 2>&1 || die "the head did not start (see $LOG)"

i=0
for node in $RAY_NODES; do
    i=$((i + 1))
    resource=${node%%=*}
    targets=${node#*=}
    ns=tf-ray$i addr=$NET.$((200 + i)) veth=tfr$i
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/32" dev eth0
    ip -n "$ns" link set eth0 up
    for dst in $HEAD_IP ${targets//,/ }; do
        ip -n "$ns" route add "$dst/32" dev eth0 src "$addr"
    done
    say "worker $ns at $addr offers $resource, reaches ${targets//,/ }"
    # the node's session files in a private tmpfs; its daemons keep the mount namespace alive
    ip netns exec "$ns" unshare -m --propagation private sh -c \
        "mount -t tmpfs -o size=1g tfray $TMP && exec ${CLEAN_ENV[*]} $RAY start --address=$HEAD_IP:$PORT \
         --node-ip-address=$addr --num-cpus=1 --resources='{\"$resource\": 1}' --disable-usage-stats" >>"$LOG" 2>&1 \
        || die "worker $ns did not start (see $LOG)"
done

# every worker registered with the head, or a clear failure
for _ in $(seq 1 60); do
    alive=$("${CLEAN_ENV[@]}" "$ROOT/.venv/bin/python" - "$HEAD_IP:$PORT" <<'EOF' 2>/dev/null || true
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
)
    [[ $alive == $((i + 1)) ]] && break
    sleep 1
done
[[ ${alive:-0} == $((i + 1)) ]] || die "only ${alive:-0} of $((i + 1)) Ray nodes came up (see $TMP/session_latest/logs)"
say "$((i + 1)) nodes up"
echo "RAY_ADDRESS=$HEAD_IP:$PORT"
