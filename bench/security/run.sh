#!/usr/bin/env bash
# ACL / TLS cost: `bench/security/run.sh MODE SIZE [yes]` with MODE off|acl|tls|on prints the
# produce TPS of one 15 s run against a fresh `ferrymq standalone` whose store is on /dev/shm.
# `yes` pins the broker to core 0 and the bench to core 1. Methodology: BENCHMARKS.md.
#
# Environment: WORKERS (bench -w, default 64); BROKER_CPU / CLIENT_CPU = a percentage of one
# core that side may use (a CPU cgroup, needs root), to make that side the bottleneck.
set -euo pipefail
M=$1; S=$2; PIN=${3:-no}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${FERRYMQ_BIN:-${CARGO_TARGET_DIR:-$HERE/../../target}/release/ferrymq}
[ -x "$BIN" ] || { echo "no ferrymq binary at $BIN (cargo build --release -p ferrymq, or set FERRYMQ_BIN)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/ferrymq-bench-sec.XXXXXX)
STORE=/dev/shm/ferrymq-bench-$M-$$
PID=
GROUPS_MADE=()
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
    # Leave the client group before removing it (this shell joined it).
    if [ ${#GROUPS_MADE[@]} -gt 0 ]; then
        if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo $$ > /sys/fs/cgroup/cgroup.procs
        else echo $$ > /sys/fs/cgroup/cpu/cgroup.procs; fi
        for g in "${GROUPS_MADE[@]}"; do rmdir "$g" 2>/dev/null || true; done
    fi
    rm -rf "$WORK" "$STORE"
}
trap cleanup EXIT
# limit PID PERCENT NAME: caps PID (and the threads and children it makes later) at PERCENT of a core.
limit() {
    local g
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        g=/sys/fs/cgroup/ferrymq-bench-$3-$$
        mkdir "$g"; echo "$(($2 * 1000)) 100000" > "$g/cpu.max"
    else
        g=/sys/fs/cgroup/cpu/ferrymq-bench-$3-$$
        mkdir "$g"; echo 100000 > "$g/cpu.cfs_period_us"; echo $(($2 * 1000)) > "$g/cpu.cfs_quota_us"
    fi
    GROUPS_MADE+=("$g")
    echo "$1" > "$g/cgroup.procs"
}
printf 'accounts:\n  - accessKey: bench\n    secretKey: bench-secret\n    defaultTopicPerm: PUB|SUB\n    defaultGroupPerm: SUB\n' > "$WORK/plain_acl.yml"
{
    echo "storePathRootDir=$STORE"
    echo "listenPort=20911"
    case $M in acl|on) echo "aclEnable=true"; echo "rocketmq.acl.plain.file=$WORK/plain_acl.yml";; esac
    case $M in tls|on) echo "tls.server.mode=enforcing";; *) echo "tls.server.mode=disabled";; esac
} > "$WORK/broker.conf"
SP=(); CP=()
if [ "$PIN" = yes ]; then SP=(taskset -c 0); CP=(taskset -c 1); fi
"${SP[@]}" "$BIN" standalone -c "$WORK/broker.conf" --no-grpc --namesrv-listen 127.0.0.1:29876 >"$WORK/server.log" 2>&1 &
PID=$!
[ -n "${BROKER_CPU:-}" ] && limit "$PID" "$BROKER_CPU" broker
[ -n "${CLIENT_CPU:-}" ] && limit $$ "$CLIENT_CPU" client
sleep 1.5
ARGS=(-n 127.0.0.1:29876 -w "${WORKERS:-64}" -s "$S")
case $M in acl|on) ARGS+=(--access-key bench --secret-key bench-secret);; esac
case $M in tls|on) ARGS+=(--tls);; esac
"${CP[@]}" "$BIN" bench produce "${ARGS[@]}" --duration 3 --json >/dev/null 2>&1
"${CP[@]}" "$BIN" bench produce "${ARGS[@]}" --duration 15 --json 2>/dev/null > "$WORK/out.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['tps']:.0f} msg/s, failed {d['failed']}\")" "$WORK/out.json"
