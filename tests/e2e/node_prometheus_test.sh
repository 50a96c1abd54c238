#!/bin/sh
# shellcheck disable=SC2016 # eventually takes code to eval, quoted on purpose
# A real Prometheus server scrapes the node proxies' metrics (15020) and its
# queries show Istio's TCP metrics with the expected labels.
#
# Two-node local cluster: a python web server on node-2 behind Service web,
# a client pod (service account "curl-sa") on node-1 that curls it. The
# Debian `prometheus` binary runs inside the hub netns (veil-C) with its
# own temporary TSDB, listens on the hub's loopback, and scrapes both node
# proxies at their hub addresses (198.18.0.11/12:15020; the metrics listener
# binds 0.0.0.0, docs/node.md). We then ask its HTTP API:
#   - `up` is 1 for both targets;
#   - istio_tcp_connections_opened_total has a reporter="source" series
#     (node-1) and a reporter="destination" series (node-2) for
#     client -> web with mutual_tls, the client's SPIFFE principal and the
#     web Service;
#   - istio_tcp_sent_bytes_total / istio_tcp_received_bytes_total of those
#     series are > 0.
# Needs root (network namespaces) and /usr/bin/prometheus (Debian package
# prometheus, installed by scripts/setup).
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
PROMETHEUS=$(command -v prometheus || true)
[ -n "$PROMETHEUS" ] || { echo "FAIL: prometheus not found: run scripts/setup (Debian package prometheus)" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

C=prom$$
DIR=/run/veil/$C
HUB=veil-$C
TMP=$(mktemp -d /tmp/veil-prom-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control
PROM_PID=""

cleanup() {
    if [ -n "$PROM_PID" ]; then
        kill "$PROM_PID" 2>/dev/null || true
        wait "$PROM_PID" 2>/dev/null || true
    fi
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$DIR"/*.log "$DIR"/nodes/*.log; do
        [ -f "$f" ] && tail -n 20 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    [ -f "$TMP/prometheus.log" ] && tail -n 20 "$TMP/prometheus.log" | sed 's/^/    prometheus: /' >&2
    [ -f "$TMP/last.json" ] && sed 's/^/    last answer: /' "$TMP/last.json" >&2
    exit 1
}

# Waits until `cmd` succeeds (up to ~20 s): Prometheus needs a few seconds
# to start and a scrape interval to see a change.
eventually() {
    for _ in $(seq 100); do
        if eval "$1"; then return 0; fi
        sleep 0.2
    done
    fail "never true: $1"
}

# prom_query EXPR: the JSON answer of /api/v1/query, also kept in last.json.
prom_query() {
    ip netns exec "$HUB" curl -fsS -m 5 -G "http://127.0.0.1:9090/api/v1/query" \
        --data-urlencode "query=$1" >"$TMP/last.json" 2>&1 || return 1
    cat "$TMP/last.json"
}

# check.py [min=N] [count=N] [value=V] label=value|label~substring ...:
# succeeds when at least `min` series (default 1) of the vector on stdin
# have all those labels and a value > 0 (or == V with value=V); count=N
# also requires exactly N such series.
cat >"$TMP/check.py" <<'EOF'
import json, sys
d = json.load(sys.stdin)
if d.get("status") != "success":
    sys.exit(1)
want_min, want_count, want_value, conds = 1, None, None, []
for a in sys.argv[1:]:
    if a.startswith("min="):
        want_min = int(a[4:])
    elif a.startswith("count="):
        want_count = int(a[6:])
    elif a.startswith("value="):
        want_value = float(a[6:])
    elif "~" in a and ("=" not in a or a.index("~") < a.index("=")):
        k, v = a.split("~", 1)
        conds.append((k, v, True))
    else:
        k, v = a.split("=", 1)
        conds.append((k, v, False))
n = 0
for r in d["data"]["result"]:
    m = r["metric"]
    if not all((v in m.get(k, "")) if sub else (m.get(k) == v) for k, v, sub in conds):
        continue
    val = float(r["value"][1])
    if (val == want_value) if want_value is not None else (val > 0):
        n += 1
sys.exit(0 if n >= want_min and (want_count is None or n == want_count) else 1)
EOF
check() { # check QUERY ARGS...: the query's answer satisfies check.py ARGS
    q=$1
    shift
    prom_query "$q" | "$PY" "$TMP/check.py" "$@"
}

# Topology: control plane and two node proxies.
"$VEIL" cluster create --name "$C" --nodes 2 >"$TMP/create.log" 2>&1 ||
    { cat "$TMP/create.log" >&2; fail "cluster create"; }

# Workloads and config.
"$VEIL" run --cluster "$C" --node node-2 --name web --label app=web -- \
    python3 -m http.server 8080 >"$TMP/run.log" 2>&1 || fail "veil run web: $(cat "$TMP/run.log")"
"$VEIL" run --cluster "$C" --node node-1 --name client --service-account curl-sa -- \
    sleep 600 >"$TMP/run.log" 2>&1 || fail "veil run client: $(cat "$TMP/run.log")"
cat >"$TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
"$VEIL" apply -f "$TMP/svc.yaml" >/dev/null || fail "apply the Service"

# Traffic: a few requests through the Service (by name, so over HBONE).
eventually '"$VEIL" exec --cluster "$C" client -- curl -fs -m 3 -o /dev/null http://web/ 2>/dev/null'
for _ in 1 2 3; do
    "$VEIL" exec --cluster "$C" client -- curl -fs -m 3 -o /dev/null http://web/ ||
        fail "curl http://web/"
done

# The real Prometheus, in the hub netns, scraping both node proxies.
ip netns exec "$HUB" ip link set lo up
cat >"$TMP/prometheus.yml" <<'EOF'
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: veil-node
    static_configs:
      - targets: ['198.18.0.11:15020']
        labels: {node: node-1}
      - targets: ['198.18.0.12:15020']
        labels: {node: node-2}
EOF
ip netns exec "$HUB" "$PROMETHEUS" --config.file="$TMP/prometheus.yml" \
    --storage.tsdb.path="$TMP/tsdb" --web.listen-address=127.0.0.1:9090 \
    --web.console.templates="$TMP" --web.console.libraries="$TMP" \
    </dev/null >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!

eventually 'ip netns exec "$HUB" curl -fs -m 2 -o /dev/null http://127.0.0.1:9090/-/ready'

# Both targets scraped and up.
eventually 'check up job=veil-node count=2 value=1'

SRC_PRINCIPAL=spiffe://cluster.local/ns/default/sa/curl-sa
LABELS="connection_security_policy=mutual_tls response_flags=-"
LABELS="$LABELS source_workload_namespace=default destination_workload=web"
LABELS="$LABELS destination_workload_namespace=default destination_service~web"
LABELS="$LABELS source_principal=$SRC_PRINCIPAL"
# source_workload: the source node knows its own pod. The destination node
# knows only its own workloads and the endpoints of Services (docs/node.md,
# "Data path"), so for a client that backs no Service it reports the
# principal and the namespace but source_workload="unknown": not asserted.
for reporter in source destination; do
    node="node-2"
    [ "$reporter" = source ] && node="node-1 source_workload=client"
    eventually "check istio_tcp_connections_opened_total reporter=$reporter node=$node $LABELS"
    eventually "check istio_tcp_connections_closed_total reporter=$reporter node=$node $LABELS"
    eventually "check istio_tcp_sent_bytes_total reporter=$reporter node=$node $LABELS"
    eventually "check istio_tcp_received_bytes_total reporter=$reporter node=$node $LABELS"
done
# The destination side knows the server's principal too.
eventually 'check istio_tcp_connections_opened_total reporter=destination \
    destination_principal=spiffe://cluster.local/ns/default/sa/web \
    destination_service=web.default.svc.cluster.local'

# Prometheus stops cleanly (SIGTERM).
kill "$PROM_PID"
wait "$PROM_PID" || fail "prometheus exited with status $?"
PROM_PID=""

echo "PASS: node_prometheus_test"
