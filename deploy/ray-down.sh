#!/usr/bin/env bash
# Stop the Ray cluster of deploy/ray-up.sh: every process in the worker namespaces tf-ray*, the
# namespaces and their veths, then the head. Safe to run when nothing is up.
#
#   deploy/ray-down.sh            deploy/ray-down.sh --quiet (say nothing when nothing was up)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RAY=${RAY:-$ROOT/.venv/bin/ray}
TMP=/tmp/tunefleet-ray
quiet=0
[[ ${1:-} == --quiet ]] && quiet=1
say() { [[ $quiet == 1 ]] || printf 'ray-down: %s\n' "$*"; }
[[ $EUID -eq 0 ]] || { printf 'ray-down: error: must run as root\n' >&2; exit 1; }

for ns in $(ip netns list | awk '$1 ~ /^tf-ray[0-9]+$/ {print $1}'); do
    pids=$(ip netns pids "$ns" || true)
    [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
    ip netns delete "$ns"
    say "worker $ns stopped"
done
# the head: only the Ray started with our session folder, not another Ray on this machine
pids=$(pgrep -f -- "--temp-dir=$TMP|$TMP/session_" || true)
if [[ -n $pids ]]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
        pids=$(pgrep -f -- "--temp-dir=$TMP|$TMP/session_" || true)
        [[ -z $pids ]] && break
        sleep 0.1
    done
    [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
    say "head stopped"
fi
