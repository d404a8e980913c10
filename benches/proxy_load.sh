#!/usr/bin/env bash
# Proxy throughput and added latency: the same fixture served directly, through lull's
# activator, and through nginx as a reverse proxy, under the same load in one run.
#
# Builds lull in release mode and starts, all on 127.0.0.1:
#   - direct:    `lull fixture --work 0ms` on its own port;
#   - activator: `lull up` on a spec whose one replica (min = max = 1) is the same fixture;
#   - nginx:     Debian's nginx, configured here in a temporary directory, proxying to the
#                direct fixture through an upstream with `keepalive 64`, HTTP/1.1 and
#                `Connection ""` (the usual production reverse-proxy setup).
# Then it runs wrk against each in turn with the same settings (keep-alive, fixed connections,
# DURATION each, one warm-up second first), ROUNDS times with the targets interleaved, first with
# CONNECTIONS connections (throughput), then with one (latency of the hop alone), and prints requests/s, p50 and p99 for each, the
# ratios activator/nginx and activator/direct, and the p50 the activator adds over direct.
# Everything it starts is stopped by pid when it exits, however it exits.
#
# Usage: benches/proxy_load.sh
#        CONNECTIONS=64 THREADS=1 DURATION=10s ROUNDS=3 benches/proxy_load.sh
#        LULL_BIN=target/release/lull benches/proxy_load.sh   (skip the build)
# Needs: cargo, curl, python3; wrk and nginx (installed with apt-get when missing and root).
set -euo pipefail

CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"

cd "$(dirname "$0")/.."

need() {
    local tool="$1" package="$2"
    if command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]]; then
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        echo "$tool is missing; install it (apt-get install $package) and run again" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null
}
need wrk wrk
need nginx nginx
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# shellcheck source=benches/lib.sh
source benches/lib.sh proxy-load

wait_ok() {
    local url="$1" what="$2"
    for _ in $(seq 300); do
        if curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$what did not answer at $url" >&2
    exit 1
}

# The fixture served directly.
DIRECT_PORT="$(free_port)"
"$LULL" fixture --port "$DIRECT_PORT" --startup-delay 0ms --work 0ms \
    >"$WORK/fixture.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$DIRECT_PORT/health" "the fixture"

# The same fixture behind lull's activator: one replica, always up.
mkdir -p "$WORK/specs"
cat >"$WORK/specs/bench.yaml" <<EOF
name: bench
command: ["$LULL", "fixture", "--startup-delay", "0ms", "--work", "0ms"]
resources:
  replicas: 1
EOF
LISTEN="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
"$LULL" --state-dir "$WORK/state" up "$WORK/specs" --listen "$LISTEN" --admin "$ADMIN" \
    >"$WORK/lull.stdout" 2>"$WORK/lull.stderr" &
PIDS+=($!)
wait_ok "http://$LISTEN/bench/health" "lull up"

# nginx as a reverse proxy to the direct fixture, with pooled upstream connections.
NGINX_PORT="$(free_port)"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream fixture {
        server 127.0.0.1:$DIRECT_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://fixture;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr" &
PIDS+=($!)
wait_ok "http://127.0.0.1:$NGINX_PORT/health" "nginx"

# Runs wrk on $2 with $1 connections and prints "rps p50_us p99_us".
measure() {
    local connections="$1" url="$2" out
    wrk -t"$THREADS" -c"$connections" -d1s "$url" >/dev/null
    out="$(wrk -t"$THREADS" -c"$connections" -d"$DURATION" --latency "$url")"
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "errors while loading $url:" >&2
        echo "$out" >&2
        exit 1
    fi
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def micros(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = micros(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = micros(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
print(f"{rps:.0f} {p50:.0f} {p99:.0f}")
PY
}

DIRECT_URL="http://127.0.0.1:$DIRECT_PORT/predict"
ACTIVATOR_URL="http://$LISTEN/bench/predict"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/predict"
# Runs ROUNDS rounds of `measure $1` over the three targets, the order rotating each round, and
# prints for each target (direct, activator, nginx) the round with its median requests/s. A
# shared machine's speed drifts over a minute; interleaving puts each target under the same
# drift, where three runs one after the other would each get their own.
rounds() {
    local connections="$1" urls=("$DIRECT_URL" "$ACTIVATOR_URL" "$NGINX_URL") round i
    local results=()
    for ((round = 0; round < ROUNDS; round++)); do
        for ((i = 0; i < 3; i++)); do
            local t=$(((i + round) % 3))
            results+=("$t $(measure "$connections" "${urls[$t]}")")
        done
    done
    printf '%s\n' "${results[@]}" | python3 -c '
import sys
runs = {}
for line in sys.stdin:
    t, rps, p50, p99 = line.split()
    runs.setdefault(int(t), []).append((float(rps), p50, p99))
for t in range(3):
    ordered = sorted(runs[t])
    rps, p50, p99 = ordered[len(ordered) // 2]
    print(f"{rps:.0f} {p50} {p99}")
'
}

# Throughput: enough connections to keep every process busy.
{ read -r D_RPS D_P50 D_P99; read -r A_RPS A_P50 A_P99; read -r N_RPS N_P50 N_P99; } \
    <<<"$(rounds "$CONNECTIONS")"
# Latency of the hop itself: one connection, so no request queues behind another and the
# difference to direct is what the proxy adds, not the time spent waiting for a busy core.
{ read -r D1_RPS D1_P50 D1_P99; read -r A1_RPS A1_P50 A1_P99; read -r N1_RPS N1_P50 N1_P99; } \
    <<<"$(rounds 1)"

echo
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load:    wrk -t$THREADS -d$DURATION, keep-alive, GET /predict (fixture --work 0ms); -c$CONNECTIONS, then -c1"
echo "rounds:  $ROUNDS, targets interleaved; each figure is its target's median round by req/s"
echo "nginx:   $("$NGINX" -v 2>&1 | cut -d/ -f2), worker_processes auto, upstream keepalive 64"
echo
printf '%-10s %10s %10s %10s   %10s %10s %10s\n' "" "req/s" "p50 (us)" "p99 (us)" "1c req/s" "1c p50" "1c p99"
printf '%-10s %10s %10s %10s   %10s %10s %10s\n' direct "$D_RPS" "$D_P50" "$D_P99" "$D1_RPS" "$D1_P50" "$D1_P99"
printf '%-10s %10s %10s %10s   %10s %10s %10s\n' activator "$A_RPS" "$A_P50" "$A_P99" "$A1_RPS" "$A1_P50" "$A1_P99"
printf '%-10s %10s %10s %10s   %10s %10s %10s\n' nginx "$N_RPS" "$N_P50" "$N_P99" "$N1_RPS" "$N1_P50" "$N1_P99"
echo
python3 - "$A_RPS" "$N_RPS" "$D_RPS" "$A_P50" "$D_P50" "$A1_P50" "$N1_P50" "$D1_P50" <<'PY'
import sys
a, n, d, ap50, dp50, a1, n1, d1 = map(float, sys.argv[1:])
print(f"activator/nginx throughput:        {a / n:.2f}  (goal >= 1.00)")
print(f"activator/direct throughput:       {a / d:.2f}")
print(f"p50 added over direct, 1 conn:     activator {a1 - d1:.0f} us, nginx {n1 - d1:.0f} us  (goal <= 100 us)")
print(f"p50 added over direct, under load: {ap50 - dp50:.0f} us (mostly queueing behind busy cores)")
PY
