#!/bin/bash
# Deploying a waypoint (docs/waypoint.md): on a two-node local cluster,
# `veil waypoint add --namespace default --enroll` starts the waypoint as its
# own pod; it is ready (15021 in its netns), joined as the pseudo-node
# wp.default.waypoint, its Pod carries Istio's labels, the namespace is
# labelled, it runs as SCHED_BATCH as the node proxies do, and its 15008
# answers a TLS handshake (ALPN h2, client certificate from `veil ca
# issue`) with a certificate for
# spiffe://cluster.local/ns/default/sa/waypoint. Bad requests are refused and
# leave nothing. `veil waypoint remove` takes the label off, deletes the Pod
# and leaves no process, netns or record; `veil cluster delete` removes a
# waypoint that is still there. Needs root (network namespaces).
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
NAME=wpd$$
DIR=/run/veil/$NAME
TMP=$(mktemp -d /tmp/veil-wp-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control
export VEIL_CLUSTER=$NAME

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v openssl >/dev/null; then
    echo "skip: needs root, iproute2 and openssl"
    exit 0
fi

cleanup() {
    "$VEIL" cluster delete --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$DIR"/pods/*/*.log "$DIR"/nodes/*.log "$DIR"/*.log; do
        [ -f "$f" ] && tail -n 20 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    exit 1
}

eventually() {
    for _ in $(seq 100); do
        if eval "$1"; then return 0; fi
        sleep 0.1
    done
    fail "never true: $1"
}

running() { # a process that exists and is not a zombie
    [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'
}

field() { # field FILE KEY: a top-level value of a pod record
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}

status_json() {
    "$VEIL" status --json >"$TMP/status.json" || fail "veil status"
    python3 -c "import json,sys; d=json.load(open('$TMP/status.json')); d=d.get('status', d); print($1)"
}

# Topology: a control plane and two nodes with their node proxies.
"$VEIL" cluster create --name "$NAME" --nodes 2 >"$TMP/create.log" 2>&1 ||
    { cat "$TMP/create.log" >&2; fail "cluster create"; }

# Refused: bad names, an unknown node; nothing of them stays.
"$VEIL" waypoint add --namespace Bad_NS >"$TMP/bad" 2>&1 && fail "a bad namespace was accepted"
grep -q "not a valid namespace name" "$TMP/bad" || fail "bad namespace: $(cat "$TMP/bad")"
"$VEIL" waypoint add --namespace default --node node-9 >"$TMP/bad" 2>&1 &&
    fail "node-9 was accepted"
grep -q "no node 'node-9'" "$TMP/bad" || fail "node-9: $(cat "$TMP/bad")"
[ ! -e "$DIR/pods/default/waypoint.json" ] || fail "a refused waypoint left its record"
"$VEIL" waypoint run --namespace default --name x --state-dir "$TMP/x" --control 127.0.0.1:1 \
    --sched fifo >"$TMP/bad" 2>&1 && fail "--sched fifo was accepted"
grep -q "waypoint run: --sched: expected batch or inherit, got 'fifo'" "$TMP/bad" ||
    fail "--sched fifo: $(cat "$TMP/bad")"
[ ! -e "$TMP/x" ] || fail "a refused waypoint run left its state dir"

# The waypoint: added, enrolled, ready.
"$VEIL" waypoint add --namespace default --enroll >"$TMP/add" 2>&1 ||
    fail "waypoint add: $(cat "$TMP/add")"
grep -q "waypoint default/waypoint runs on node-1" "$TMP/add" || fail "add: $(cat "$TMP/add")"
grep -q "istio.io/use-waypoint=waypoint" "$TMP/add" || fail "add: no enrolment: $(cat "$TMP/add")"
REC=$DIR/pods/default/waypoint.json
WP_NETNS=$(field "$REC" netns)
WP_IP=$(field "$REC" address)
WP_PID=$(field "$REC" pid)
[ "$(field "$REC" waypoint)" = True ] || fail "the record does not say waypoint"
running "$WP_PID" || fail "the waypoint process is not running"
# Its policy, and the node proxies': SCHED_BATCH (docs/node.md, "Scheduling").
for p in "$WP_PID" "$(cat "$DIR/nodes/node-1.pid")" "$(cat "$DIR/nodes/node-2.pid")"; do
    chrt -p "$p" | grep -q "policy: SCHED_BATCH" || fail "pid $p: $(chrt -p "$p")"
done
[ "$(ip netns exec "$WP_NETNS" curl -s -o /dev/null -w '%{http_code}' \
    http://127.0.0.1:15021/healthz/ready)" = 200 ] || fail "the waypoint is not ready"
# Not captured: the node proxy of node-1 did not enrol it.
ip netns exec "$WP_NETNS" nft list tables 2>/dev/null | grep -q veil && fail "the waypoint is captured"
"$VEIL" waypoint list >"$TMP/list" || fail "waypoint list"
grep -q "^default  *waypoint  *node-1  *$WP_IP  *yes  *wp.default.waypoint" "$TMP/list" ||
    fail "list: $(cat "$TMP/list")"

# The control plane: the pseudo-node is subscribed, the Pod has Istio's
# labels and runs on it, the namespace is labelled.
eventually '[ "$(status_json "[n[\"connected\"] for n in d[\"nodes\"] if n[\"name\"] == \"wp.default.waypoint\"]")" = "[True]" ]'
[ "$(status_json "[w['node'] for w in d['workloads'] if w['name'] == 'waypoint']")" = "['wp.default.waypoint']" ] ||
    fail "the waypoint Pod is not on its pseudo-node"
python3 - "$DIR/control/resources.json" <<'EOF' || fail "resources: labels"
import json, sys
res = [r["object"] for r in json.load(open(sys.argv[1]))["resources"]]
pod = [o for o in res if o["kind"] == "Pod" and o["metadata"]["name"] == "waypoint"][0]
assert pod["metadata"]["labels"] == {
    "gateway.networking.k8s.io/gateway-name": "waypoint",
    "istio.io/dataplane-mode": "none"}, pod
assert pod["spec"]["serviceAccountName"] == "waypoint", pod
ns = [o for o in res if o["kind"] == "Namespace" and o["metadata"]["name"] == "default"][0]
assert ns["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint", ns
EOF

# Twice: refused. A pod of that name cannot be removed with veil rm.
"$VEIL" waypoint add --namespace default >"$TMP/again" 2>&1 && fail "a second add succeeded"
grep -q "already exists" "$TMP/again" || fail "second add: $(cat "$TMP/again")"
"$VEIL" rm waypoint >"$TMP/rm" 2>&1 && fail "veil rm removed a waypoint"
grep -q "veil waypoint remove" "$TMP/rm" || fail "rm: $(cat "$TMP/rm")"

# 15008: mutual TLS with ALPN h2; its certificate is the waypoint identity.
"$VEIL" ca issue --namespace default --service-account probe --out "$TMP/certs" >/dev/null ||
    fail "ca issue"
"$VEIL" run --node node-2 --name probe --no-mesh -- sleep 600 >/dev/null || fail "run probe"
"$VEIL" exec probe -- openssl s_client -connect "$WP_IP:15008" -alpn h2 \
    -cert "$TMP/certs/cert-chain.pem" -key "$TMP/certs/key.pem" \
    -CAfile "$TMP/certs/root-cert.pem" -verify_return_error </dev/null >"$TMP/tls" 2>&1 ||
    fail "TLS handshake with the waypoint: $(tail -n 20 "$TMP/tls")"
grep -q "ALPN protocol: h2" "$TMP/tls" || fail "no ALPN h2: $(tail -n 20 "$TMP/tls")"
grep -q "Verify return code: 0 (ok)" "$TMP/tls" || fail "not verified: $(tail -n 20 "$TMP/tls")"
openssl x509 -noout -ext subjectAltName <"$TMP/tls" >"$TMP/san" 2>&1 || fail "no certificate"
grep -q "URI:spiffe://cluster.local/ns/default/sa/waypoint$" "$TMP/san" ||
    fail "waypoint SAN: $(cat "$TMP/san")"

# Remove: no process, netns, record or label left; the Pod is gone.
"$VEIL" waypoint remove --namespace default >"$TMP/remove" 2>&1 ||
    fail "remove: $(cat "$TMP/remove")"
grep -q "namespace default no longer uses the waypoint" "$TMP/remove" ||
    fail "remove: $(cat "$TMP/remove")"
eventually '! running "$WP_PID"'
ip netns list | grep -q "^$WP_NETNS\( \|$\)" && fail "the waypoint netns is left"
[ ! -e "$REC" ] && [ ! -e "$DIR/pods/default/waypoint.state" ] || fail "records left"
[ "$(status_json "[w for w in d['workloads'] if w['name'] == 'waypoint']")" = "[]" ] ||
    fail "the waypoint Pod is still registered"
python3 - "$DIR/control/resources.json" <<'EOF' || fail "the namespace label is left"
import json, sys
res = [r["object"] for r in json.load(open(sys.argv[1]))["resources"]]
ns = [o for o in res if o["kind"] == "Namespace" and o["metadata"]["name"] == "default"]
assert all("istio.io/use-waypoint" not in o["metadata"].get("labels", {}) for o in ns), ns
EOF
"$VEIL" waypoint remove --namespace default >/dev/null 2>&1 && fail "a second remove succeeded"

# cluster delete takes a waypoint with it.
"$VEIL" waypoint add --namespace shop --name edge --node node-2 >"$TMP/add2" 2>&1 ||
    fail "add shop/edge: $(cat "$TMP/add2")"
PID2=$(field "$DIR/pods/shop/edge.json" pid)
"$VEIL" cluster delete --name "$NAME" >"$TMP/del" 2>&1 || fail "delete: $(cat "$TMP/del")"
running "$PID2" && fail "cluster delete left the waypoint process"
ip netns list | grep -q "veil-$NAME" && fail "netns left: $(ip netns list | grep "veil-$NAME")"
echo "ok"
