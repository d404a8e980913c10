#!/usr/bin/env bash
# Memory of parked requests: 10,000 concurrent HTTP/1.1 requests wait on a cold deployment
# whose replica takes a long time to start; the peak resident memory of the `lull up` process
# is reported.
#
# `lull up` runs the activator, the autoscaler and the embedded backend in one process, so the
# figure is the whole of lull on this machine, not the activator alone; the replica is a process
# of its own and is not counted. The process's resident memory before the burst is reported too,
# and the difference divided by the parked requests is the cost of one parked request.
#
# The client (python3 asyncio, one connection per request, as HTTP/1.1 clients do) opens the
# connections, sends each request head and waits; the script reads the number of parked requests
# from lull's /metrics until all are parked, then VmHWM and VmRSS from /proc/<pid>/status.
# Everything it starts is stopped by pid when it exits, however it exits.
#
# Usage: benches/parked_rss.sh
#        PARKED=2000 benches/parked_rss.sh
#        LULL_BIN=target/release/lull benches/parked_rss.sh   (skip the build)
# Needs: cargo, curl, python3; a file descriptor limit above PARKED (raised here when allowed).
set -euo pipefail

PARKED="${PARKED:-10000}"

cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh parked-rss

# Each parked request holds a connection in lull and one in the client.
want=$((PARKED + 1024))
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt "$want" ]]; then
    ulimit -n "$want" 2>/dev/null || {
        echo "the file descriptor limit $(ulimit -n) is below $want and cannot be raised" >&2
        exit 1
    }
fi

# A deployment at zero whose replica needs five minutes to start: every request parks.
mkdir -p "$WORK/specs"
cat >"$WORK/specs/cold.yaml" <<EOF
name: cold
command: ["$LULL", "fixture", "--startup-delay", "300s", "--work", "0ms"]
resources:
  autoscaling:
    minReplicas: 0
    maxReplicas: 1
    scaleToZeroAfter: 10m
activator:
  queueCapacity: $PARKED
  queueTimeout: 10m
EOF
LISTEN_PORT="$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
"$LULL" --state-dir "$WORK/state" up "$WORK/specs" --listen "127.0.0.1:$LISTEN_PORT" \
    --admin "$ADMIN" >"$WORK/lull.stdout" 2>"$WORK/lull.stderr" &
LULL_PID=$!
PIDS+=("$LULL_PID")
for _ in $(seq 300); do
    curl -fsS --max-time 2 -o /dev/null "http://$ADMIN/v1/deployments" 2>/dev/null && break
    sleep 0.1
done

status_kib() {
    awk -v key="$1:" '$1 == key { print $2 }' "/proc/$LULL_PID/status"
}
BEFORE_KIB="$(status_kib VmRSS)"

python3 - "$LISTEN_PORT" "$PARKED" <<'PY' &
import asyncio, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
async def park(i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /cold/predict?i={i} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    await reader.read(1)  # waits until the script stops everything
async def main():
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(park(i)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks, return_exceptions=True)
asyncio.run(main())
PY
PIDS+=($!)

parked() {
    curl -fsS --max-time 5 "http://$ADMIN/metrics" 2>/dev/null |
        awk '$1 ~ /^lull_activator_parked\{deployment="cold"\}/ { print $2 }'
}
for _ in $(seq 1200); do
    n="$(parked || true)"
    [[ "${n:-0}" -ge "$PARKED" ]] && break
    if ! kill -0 "$LULL_PID" 2>/dev/null; then
        echo "lull up exited; its stderr:" >&2
        cat "$WORK/lull.stderr" >&2
        exit 1
    fi
    sleep 0.1
done
n="$(parked || true)"
if [[ "${n:-0}" -lt "$PARKED" ]]; then
    echo "only ${n:-0} of $PARKED requests parked" >&2
    exit 1
fi
sleep 1
PEAK_KIB="$(status_kib VmHWM)"
NOW_KIB="$(status_kib VmRSS)"

echo
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo "parked:  $n HTTP/1.1 requests, one connection each, on a deployment at zero"
echo "process: lull up (activator + autoscaler + embedded backend; the replica not counted)"
python3 - "$BEFORE_KIB" "$NOW_KIB" "$PEAK_KIB" "$n" <<'PY'
import sys
before, now, peak, n = (int(x) for x in sys.argv[1:])
print(f"RSS before the burst:    {before / 1024:7.1f} MiB")
print(f"RSS with all parked:     {now / 1024:7.1f} MiB")
print(f"peak RSS (VmHWM):        {peak / 1024:7.1f} MiB  (goal <= 64 MiB)")
print(f"per parked request:      {(now - before) * 1024 / n / 1024:7.1f} KiB")
PY
