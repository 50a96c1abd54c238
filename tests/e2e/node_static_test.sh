#!/bin/sh
# shellcheck disable=SC2016,SC2034 # `eventually` evals code strings, quoted on purpose
# With the control plane killed, existing and new connections between known
# workloads keep working; when it comes back, the node proxies pick up
# changes again (docs/node.md, "Control plane down").
#
# Two-node local cluster. On node-2: redis (Service redis) and a python web
# server (Service web). On node-1: a client pod running a small python
# script that keeps ONE TCP connection to redis open and sends PING every
# 100 ms, logging each +PONG ("PONG n") to its log (veil logs).
#   1. replies flow;
#   2. SIGKILL the control plane (/run/veil/C/control.pid); the node
#      proxies notice (veil_node_control_plane_connected 0) and stay ready;
#      the existing connection keeps getting replies; new connections work
#      (curl http://web/, redis-cli -h redis PING) by name;
#   3. restart the control plane as `veil cluster create` starts it (same
#      command line, netns, log and pid files; src/cluster/cluster.c,
#      start_control); the proxies reconnect; a new pod and a new Service
#      applied now are reachable from the client by name; the first
#      connection is still the same one; the restarted control plane stops
#      cleanly on SIGTERM (status 0: no leak in the ASan build).
# redis runs with --protected-mode no: the proxy keeps the caller's address
# (transparent inbound), so redis sees 198.18.1.10, not loopback, and its
# protected mode would answer -DENIED.
# Needs root (network namespaces), redis-server and redis-cli.
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
for t in redis-server redis-cli; do
    command -v "$t" >/dev/null ||
        { echo "FAIL: $t not found: run scripts/setup (Debian package redis)" >&2; exit 1; }
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

C=stat$$
DIR=/run/veil/$C
HUB=veil-$C
TMP=$(mktemp -d /tmp/veil-static-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control
CONTROL_PID=""

cleanup() {
    if [ -n "$CONTROL_PID" ]; then
        kill "$CONTROL_PID" 2>/dev/null || true
        wait "$CONTROL_PID" 2>/dev/null || true
    fi
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$DIR"/*.log "$DIR"/nodes/*.log; do
        [ -f "$f" ] && tail -n 25 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    [ -f "$DIR/pods/default/client.log" ] &&
        tail -n 5 "$DIR/pods/default/client.log" | sed 's/^/    client: /' >&2
    exit 1
}

# Waits until `cmd` succeeds (up to ~20 s).
eventually() {
    for _ in $(seq 100); do
        if eval "$1"; then return 0; fi
        sleep 0.2
    done
    fail "never true: $1"
}

running() { # a live process (not a zombie)
    [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'
}

metric() { # metric NODE NAME: the value of an unlabelled metric
    ip netns exec "veil-$C-$1" curl -fs -m 2 http://127.0.0.1:15020/metrics |
        awk -v m="$2" '$1 == m {print $2}'
}

ready() { # ready NODE
    ip netns exec "veil-$C-$1" curl -fs -m 2 -o /dev/null http://127.0.0.1:15021/healthz/ready
}

pongs() { # the number of replies the client's one connection got
    "$VEIL" logs --cluster "$C" client 2>/dev/null | grep -c '^PONG' || true
}

grows() { # grows N: at least 10 more replies than N, on the same connection
    [ "$(pongs)" -ge $(($1 + 10)) ] && connection_intact
}

connection_intact() {
    "$VEIL" logs --cluster "$C" client >"$TMP/client.log" 2>&1
    ! grep -q '^lost' "$TMP/client.log" ||
        fail "the long-lived connection broke: $(grep '^lost' "$TMP/client.log")"
    [ "$(grep -c '^connected' "$TMP/client.log")" -eq 1 ] ||
        fail "the client connected more than once: $(grep '^connected' "$TMP/client.log")"
}

curl_ok() { # curl_ok URL: from the client pod
    "$VEIL" exec --cluster "$C" client -- curl -fs -m 5 -o /dev/null "$1" 2>/dev/null
}

redis_ok() { # redis_ok HOST: a new connection from the client pod
    [ "$("$VEIL" exec --cluster "$C" client -- redis-cli -h "$1" -p 6379 PING 2>/dev/null)" = PONG ]
}

# The client: one connection, PING every 100 ms. Until the first reply it
# may retry (the Service may not be known yet, and a captured connect
# succeeds locally before the tunnel is up); after it, any failure is
# "lost" and the script exits.
cat >"$TMP/pinger.py" <<'EOF'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
while True:
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.settimeout(5)
        f = s.makefile("rb")
        s.sendall(b"PING\r\n")
        line = f.readline()
        if line == b"+PONG\r\n":
            break
        print("retry: reply %r" % line[:80], flush=True)
        s.close()
    except OSError as e:
        print("retry:", e, flush=True)
    time.sleep(0.2)
print("connected", s.getsockname(), "->", s.getpeername(), flush=True)
s.settimeout(60)
n = 0
try:
    while True:
        s.sendall(b"PING\r\n")
        line = f.readline()
        if line != b"+PONG\r\n":
            raise OSError("unexpected reply %r" % line)
        n += 1
        print("PONG", n, flush=True)
        time.sleep(0.1)
except OSError as e:
    print("lost:", e, "after", n, "replies", flush=True)
    sys.exit(1)
EOF

# Topology, workloads, Services.
"$VEIL" cluster create --name "$C" --nodes 2 >"$TMP/create.log" 2>&1 ||
    { cat "$TMP/create.log" >&2; fail "cluster create"; }
run() { # run NODE NAME [veil run options] -- command...
    node=$1
    name=$2
    shift 2
    "$VEIL" run --cluster "$C" --node "$node" --name "$name" "$@" >"$TMP/run.log" 2>&1 ||
        fail "veil run $name: $(cat "$TMP/run.log")"
}
run node-2 redis --label app=redis -- redis-server --port 6379 --save '' --appendonly no \
    --protected-mode no
run node-2 web --label app=web -- python3 -m http.server 8080
service() { # service NAME PORT TARGETPORT
    cat >"$TMP/svc-$1.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  selector: {app: $1}
  ports: [{name: tcp, port: $2, targetPort: $3}]
EOF
    "$VEIL" apply -f "$TMP/svc-$1.yaml" >"$TMP/apply.log" 2>&1 ||
        fail "apply Service $1: $(cat "$TMP/apply.log")"
}
service redis 6379 6379
service web 80 8080
run node-1 client -- "$PY" -u "$TMP/pinger.py" redis 6379

# 1. Replies flow on the one connection.
eventually '[ "$(pongs)" -ge 10 ]'
connection_intact
eventually 'curl_ok http://web/'

# 2. Kill the control plane.
OLD_PID=$(cat "$DIR/control.pid")
running "$OLD_PID" || fail "the control plane ($OLD_PID) is not running"
kill -KILL "$OLD_PID"
eventually '! running "$OLD_PID"'
for node in node-1 node-2; do
    eventually '[ "$(metric $node veil_node_control_plane_connected)" = 0 ]'
    ready "$node" || fail "$node not ready without the control plane"
done

N=$(pongs)
eventually 'grows "$N"'
# New connections, by name, across nodes, through HBONE.
eventually 'curl_ok http://web/'
eventually 'curl_ok http://web.default.svc.cluster.local/'
eventually 'redis_ok redis'
N=$(pongs)
eventually 'grows "$N"'

# 3. Restart it as `veil cluster create` does (src/cluster/cluster.c,
# start_control): in the hub netns, its own session, stdin /dev/null,
# output appended to control.log, pid in control.pid.
setsid ip netns exec "$HUB" "$VEIL" control --state-dir "$DIR/control" --listen 198.18.0.1 \
    </dev/null >>"$DIR/control.log" 2>&1 &
CONTROL_PID=$!
echo "$CONTROL_PID" >"$DIR/control.pid"
eventually '"$VEIL" status --state-dir "$DIR/control" >/dev/null 2>&1'
for node in node-1 node-2; do
    eventually '[ "$(metric $node veil_node_control_plane_connected)" = 1 ]'
done

# A change made now reaches the proxies: a new pod behind a new Service.
run node-2 fresh --label app=fresh -- python3 -m http.server 8080
service fresh 80 8080
eventually 'curl_ok http://fresh/'
redis_ok redis || fail "redis-cli -h redis PING after the restart"
N=$(pongs)
eventually 'grows "$N"'

# The restarted control plane stops cleanly.
kill -TERM "$CONTROL_PID"
wait "$CONTROL_PID" || fail "the restarted control plane exited with status $?"
CONTROL_PID=""

echo "PASS: node_static_test"
