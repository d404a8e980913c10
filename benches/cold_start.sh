#!/usr/bin/env bash
# Cold-start overhead of `lull up`: how much longer than the replica's own start-up a request to
# a deployment at zero waits.
#
# Builds lull in release mode, runs `lull up` on a temporary spec (minReplicas 0, a `lull fixture`
# replica with --startup-delay 1s, scaleToZeroAfter 1s), then N times: waits until the deployment
# is at zero replicas, sends one request with curl and takes its total time. It prints each
# run, the median and the maximum of (cold-start time - start-up delay), and the machine it ran
# on. Everything it starts is stopped by pid when it exits, however it exits.
#
# Usage: benches/cold_start.sh            (N=5)
#        N=10 benches/cold_start.sh
#        LULL_BIN=target/release/lull benches/cold_start.sh   (skip the build)
# Needs: cargo, curl, python3 (for free ports and JSON).
set -euo pipefail

N="${N:-5}"
STARTUP_DELAY_MS=1000
TICK=250ms

cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh cold-start

mkdir -p "$WORK/specs"
cat >"$WORK/specs/bench.yaml" <<EOF
name: bench
command: ["lull", "fixture", "--startup-delay", "${STARTUP_DELAY_MS}ms", "--work", "0ms"]
resources:
  autoscaling:
    minReplicas: 0
    maxReplicas: 1
    scaleToZeroAfter: 1s
EOF

LISTEN="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
"$LULL" --state-dir "$WORK/state" up "$WORK/specs" --listen "$LISTEN" --admin "$ADMIN" \
    --tick "$TICK" >"$WORK/stdout" 2>"$WORK/stderr" &
LULL_PID=$!
PIDS+=("$LULL_PID")

# Prints the number of replicas of `bench` (any phase), or nothing if the admin does not answer.
replicas() {
    curl -fsS --max-time 5 "http://$ADMIN/v1/deployments" 2>/dev/null | python3 -c '
import json, sys
for d in json.load(sys.stdin)["deployments"]:
    if d["slug"] == "bench":
        print(len((d.get("backend") or {}).get("replicas", [])))'
}

wait_at_zero() {
    for _ in $(seq 600); do
        if ! kill -0 "$LULL_PID" 2>/dev/null; then
            echo "lull up exited; its stderr:" >&2
            cat "$WORK/stderr" >&2
            exit 1
        fi
        if [[ "$(replicas || true)" == "0" ]]; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench did not reach zero replicas within 60 s" >&2
    exit 1
}

results=()
for run in $(seq "$N"); do
    wait_at_zero
    out="$(curl -sS -o /dev/null --max-time 60 -w '%{http_code} %{time_total}' "http://$LISTEN/bench/predict")"
    code="${out%% *}"
    total="${out##* }"
    if [[ "$code" != 200 ]]; then
        echo "run $run: HTTP $code" >&2
        exit 1
    fi
    overhead_ms="$(awk -v t="$total" -v d="$STARTUP_DELAY_MS" 'BEGIN { printf "%.1f", t * 1000 - d }')"
    printf 'run %d: cold start %.1f ms, minus start-up delay %d ms = %s ms\n' \
        "$run" "$(awk -v t="$total" 'BEGIN { print t * 1000 }')" "$STARTUP_DELAY_MS" "$overhead_ms"
    results+=("$overhead_ms")
done

sorted="$(printf '%s\n' "${results[@]}" | sort -n)"
median="$(awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$sorted")"
max="$(tail -n 1 <<<"$sorted")"

kill -TERM "$LULL_PID"
status=0
wait "$LULL_PID" || status=$?
if [[ "$status" != 0 ]]; then
    echo "lull up exited with $status after SIGTERM" >&2
fi

echo
echo "cold-start overhead (request time - ${STARTUP_DELAY_MS} ms replica start-up), N=$N:"
echo "  median ${median} ms"
echo "  max    ${max} ms"
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
echo "date:    $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "lull:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown), tick $TICK"
