#!/bin/bash
# The node proxy end to end: a two-node local cluster, a python web server
# on node-2 behind a Service, curl from a pod on node-1 by DNS name. The
# server must see the client pod's own address, and both node proxies must
# count the connection as mutual TLS. Then a DENY policy cuts it off.
# Needs root (network namespaces).
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
NAME=e2e$$
DIR=/run/veil/$NAME
TMP=$(mktemp -d /tmp/veil-node-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control

cleanup() {
    "$VEIL" cluster delete --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$DIR"/nodes/*/*.log "$DIR"/*.log; do
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

metrics() { # metrics NODE
    ip netns exec "veil-$NAME-$1" curl -s "http://127.0.0.1:15020/metrics"
}

# Topology: a control plane and two nodes, each with its node proxy.
"$VEIL" cluster create --name "$NAME" --nodes 2 >"$TMP/create.log" 2>&1 ||
    { cat "$TMP/create.log" >&2; fail "cluster create"; }

# Config + workloads: web on node-2 behind Service web, a client on node-1.
"$VEIL" run --cluster "$NAME" --node node-2 --name web --label app=web -- \
    python3 -m http.server 8080 >/dev/null || fail "veil run web"
"$VEIL" run --cluster "$NAME" --node node-1 --name client -- sleep 600 >/dev/null ||
    fail "veil run client"
cat >"$TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
"$VEIL" apply -f "$TMP/svc.yaml" >/dev/null || fail "apply the Service"

# Traffic: by DNS name, through the Service's ClusterIP.
eventually '"$VEIL" exec --cluster "$NAME" client -- curl -s -m 3 -o /dev/null http://web.default.svc.cluster.local/ 2>/dev/null'
"$VEIL" exec --cluster "$NAME" client -- curl -s -m 3 -o /dev/null http://web/ ||
    fail "short name"

# Assertions: the server saw the client's own address ...
CLIENT_IP=$(python3 -c "import json; print(json.load(open('$DIR/pods/default/client.json'))['address'])")
eventually '"$VEIL" logs --cluster "$NAME" web 2>&1 | grep -q "^$CLIENT_IP - "'

# ... and both proxies counted mutual TLS connections.
MTLS='istio_tcp_connections_opened_total{reporter="source".*connection_security_policy="mutual_tls"'
eventually 'metrics node-1 | grep -q "$MTLS"'
MTLS_IN='istio_tcp_connections_opened_total{reporter="destination".*destination_service="web.default.svc.cluster.local",connection_security_policy="mutual_tls"'
eventually 'metrics node-2 | grep -q "$MTLS_IN"'

# Policy: deny the client; new connections fail and are counted.
cat >"$TMP/deny.yaml" <<'EOF'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]}]
EOF
"$VEIL" apply -f "$TMP/deny.yaml" >/dev/null || fail "apply the policy"
eventually '! "$VEIL" exec --cluster "$NAME" client -- curl -s -m 2 -o /dev/null http://web/'
eventually 'metrics node-2 | grep -q "veil_node_refused_total{reason=\"authz_denied\"}"'

echo "PASS: node_mesh_test"
