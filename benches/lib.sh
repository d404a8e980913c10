# Shared by the bench scripts (sourced, not run): the lull binary to measure, a work directory,
# and processes stopped by pid when the script exits, however it exits.
#
# After sourcing, from the repository root: $LULL is `LULL_BIN` when set, else a fresh release
# build; $WORK is a new temporary directory (named after $1), removed at exit; every pid added
# to PIDS is stopped at exit, the last started first (SIGTERM, then SIGKILL after 10 s).

if [[ -n "${LULL_BIN:-}" ]]; then
    LULL="$(realpath "$LULL_BIN")"
else
    cargo build --release -p lull --bin lull
    LULL="$PWD/target/release/lull"
fi

WORK="$(mktemp -d -t "lull-$1.XXXXXX")"
PIDS=()

stop_pid() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    # Reverse order: lull up stops its replicas itself, nginx its workers.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
