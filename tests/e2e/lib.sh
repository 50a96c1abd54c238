# Shared helpers for the end-to-end scenarios (sourced, not run).
# $VEIL is the veil binary under test (tests/run sets it per build).
set -eu

VEIL=${VEIL:-./build/veil}
E2E_TMP=$(mktemp -d /tmp/veil-e2e.XXXXXX)
export VEIL_STATE_DIR="$E2E_TMP/state"
CONTROL_PID=""

cleanup() {
    if [ -n "$CONTROL_PID" ]; then
        kill "$CONTROL_PID" 2>/dev/null || true
        wait "$CONTROL_PID" 2>/dev/null || true
    fi
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$E2E_TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$E2E_TMP/control.log" ] && sed 's/^/    control: /' "$E2E_TMP/control.log" >&2
    exit 1
}

# Starts the control plane on loopback with ephemeral ports and waits for it.
control_start() {
    mkdir -p "$VEIL_STATE_DIR"
    rm -f "$VEIL_STATE_DIR/ports"
    "$VEIL" control --listen 127.0.0.1 --push-port 0 --status-port 0 "$@" \
        >>"$E2E_TMP/control.log" 2>&1 &
    CONTROL_PID=$!
    for _ in $(seq 100); do
        [ -S "$VEIL_STATE_DIR/control.sock" ] && [ -f "$VEIL_STATE_DIR/ports" ] && return 0
        kill -0 "$CONTROL_PID" 2>/dev/null || fail "the control plane exited at start"
        sleep 0.1
    done
    fail "the control plane did not start"
}

# Stops it with SIGTERM and checks it exits cleanly (status 0: no leak
# reported in the ASan build).
control_stop() {
    kill -TERM "$CONTROL_PID"
    wait "$CONTROL_PID" || fail "the control plane exited with status $?"
    CONTROL_PID=""
}

status_port() {
    awk '$1 == "status" {print $2}' "$VEIL_STATE_DIR/ports"
}

# jq-free JSON checks: python3 is on every Debian machine.
json_get() { # json_get 'expr over d' < file
    python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

# Waits until `cmd` succeeds (up to ~10 s): for asynchronous effects.
eventually() {
    for _ in $(seq 100); do
        if eval "$1"; then return 0; fi
        sleep 0.1
    done
    fail "never true: $1"
}
