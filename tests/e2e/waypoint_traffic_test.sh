#!/bin/bash
# L7 through a waypoint on a real local cluster (docs/waypoint.md): two
# nodes; backends on node-2, a client pod on node-1; `veil waypoint add
# --enroll` on node-1; HTTPRoutes and an L7 AuthorizationPolicy. Checks:
# a 90/10 weighted split over 1,000 requests within +-3 points; a header
# match routes to v2; a retry on 503 hides a failing pod from curl (and
# every such request is mirrored to shop-v2); a
# request timeout answers 504; an L7 DENY on POST gives 403 while GET
# passes; a WebSocket echo; gRPC unary and streaming calls; wrk (HTTP/1.1)
# and h2load (HTTP/2) with zero errors; Istio request metrics on the
# waypoint; the destination's node proxy sees the caller's identity, not the
# waypoint's; removing and adding the waypoint under steady traffic fails no
# request. Needs root (network namespaces).
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
APP=$(readlink -f "$(dirname "$0")/apps/wp_app.py")
PY=/usr/bin/python3
C=wpt$$
D=/run/veil/$C
TMP=$(mktemp -d /tmp/veil-wpt.XXXXXX)
export VEIL_STATE_DIR=$D/control VEIL_CLUSTER=$C

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
for p in curl wrk h2load /usr/sbin/nginx; do
    command -v "$p" >/dev/null || { echo "FAIL: $p is not installed (scripts/setup)" >&2; exit 1; }
done
$PY -c 'import grpc, websockets' 2>/dev/null ||
    { echo "FAIL: python3-grpcio / python3-websockets missing (scripts/setup)" >&2; exit 1; }

cleanup() {
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$D"/pods/*/*.log "$D"/nodes/*.log "$D"/*.log; do
        [ -f "$f" ] && tail -n 12 "$f" | cut -c1-300 | sed "s|^|    $(basename "$f"): |" >&2
    done
    exit 1
}
eventually() {
    for _ in $(seq 150); do
        if eval "$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "never true: $1"
}
cx() { "$VEIL" exec client -- "$@"; }
code() { cx curl -s -o /dev/null -m 10 -w '%{http_code}' "$@"; }

"$VEIL" cluster create --name "$C" --nodes 2 >"$TMP/create" 2>&1 || fail "create: $(cat "$TMP/create")"

run() { # run NAME LABELS... -- CMD
    name=$1
    shift
    args=()
    while [ "$1" != -- ]; do args+=(--label "$1"); shift; done
    shift
    "$VEIL" run --node node-2 --name "$name" "${args[@]}" -- "$@" >"$TMP/run-$name" 2>&1 ||
        fail "run $name: $(cat "$TMP/run-$name")"
}
run shop-v1 app=shop version=v1 -- $PY "$APP" http v1
run shop-v2 app=shop version=v2 -- $PY "$APP" http v2
run web-good app=web -- $PY "$APP" http good
run web-bad app=web -- $PY "$APP" http bad fail
run ws app=ws -- $PY "$APP" ws
run grpc app=grpc -- $PY "$APP" grpc
mkdir -p "$TMP/www" "$TMP/ngx"
echo "h2 page" >"$TMP/www/index.html"
chmod -R a+rX "$TMP"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/ngx/nginx.pid;
error_log stderr;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $TMP/ngx/body;
    proxy_temp_path $TMP/ngx/proxy;
    fastcgi_temp_path $TMP/ngx/fastcgi;
    uwsgi_temp_path $TMP/ngx/uwsgi;
    scgi_temp_path $TMP/ngx/scgi;
    server { listen 8082 http2; root $TMP/www; }
}
EOF
run h2web app=h2web -- /usr/sbin/nginx -c "$TMP/nginx.conf" -g 'daemon off;'
"$VEIL" run --node node-1 --name client -- sleep 3600 >"$TMP/run-client" 2>&1 ||
    fail "run client: $(cat "$TMP/run-client")"

cat >"$TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: shop}
spec: {selector: {app: shop}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-v1}
spec: {selector: {app: shop, version: v1}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-v2}
spec: {selector: {app: shop, version: v2}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ws}
spec: {selector: {app: ws}, ports: [{name: http, port: 80, targetPort: 8765}]}
---
apiVersion: v1
kind: Service
metadata: {name: grpc}
spec: {selector: {app: grpc}, ports: [{name: grpc, port: 50051, targetPort: 50051, appProtocol: grpc}]}
---
apiVersion: v1
kind: Service
metadata: {name: h2web}
spec: {selector: {app: h2web}, ports: [{name: http2, port: 80, targetPort: 8082}]}
EOF
"$VEIL" apply -f "$TMP/svc.yaml" >"$TMP/apply" 2>&1 || fail "apply services: $(cat "$TMP/apply")"

"$VEIL" waypoint add --namespace default --node node-1 --enroll >"$TMP/wp" 2>&1 ||
    fail "waypoint add: $(cat "$TMP/wp")"
WP_NETNS=$($PY -c "import json; print(json.load(open('$D/pods/default/waypoint.json'))['netns'])")

cat >"$TMP/routes.yaml" <<'EOF'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: shop-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: shop-v1, port: 80}]
    timeouts: {request: 500ms}
  - backendRefs: [{name: shop-v1, port: 80, weight: 90}, {name: shop-v2, port: 80, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - backendRefs: [{name: web, port: 80}]
    retry: {attempts: 3, codes: [503], backoff: 10ms}
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shop-v2, port: 80}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shop-no-post}
spec:
  targetRefs: [{group: "", kind: Service, name: shop}]
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
EOF
"$VEIL" apply -f "$TMP/routes.yaml" >"$TMP/apply2" 2>&1 || fail "apply routes: $(cat "$TMP/apply2")"

# The header match reaches v2 only through the waypoint: wait for it.
eventually '[ "$(cx curl -s -m 3 -H "x-version: v2" http://shop/)" = v2 ]'
for _ in $(seq 20); do
    [ "$(cx curl -s -m 5 -H 'x-version: v2' http://shop/)" = v2 ] || fail "header match did not give v2"
done

# 90/10 over 1,000 requests (one curl, keep-alive): 10% +- 3 points.
cx curl -s -m 120 "http://shop/n[1-1000]" >"$TMP/split" || fail "split: curl failed"
V1=$(grep -c '^v1$' "$TMP/split" || true)
V2=$(grep -c '^v2$' "$TMP/split" || true)
[ $((V1 + V2)) -eq 1000 ] || fail "split: $V1 + $V2 answers of 1000"
[ "$V2" -ge 70 ] && [ "$V2" -le 130 ] || fail "split: v2 got $V2 of 1000 (want 70..130)"
echo "split: v1 $V1, v2 $V2"

# Retry on 503 hides the failing pod: every request answers 200.
cx curl -s -o /dev/null -m 60 -w '%{http_code}\n' "http://web/r[1-60]" >"$TMP/retry"
[ "$(sort -u "$TMP/retry")" = 200 ] || fail "retry: $(sort "$TMP/retry" | uniq -c)"

# Request timeout: 504 (the backend takes 3 s; the route allows 500 ms).
[ "$(code http://shop/slow)" = 504 ] || fail "timeout: not 504"

# L7 DENY on POST: 403 with a short body; GET passes.
[ "$(code -X POST -d x http://shop/)" = 403 ] || fail "POST was not denied"
[ "$(cx curl -s -m 5 -X POST -d x http://shop/)" = "RBAC: access denied" ] || fail "403 body"
[ "$(code http://shop/)" = 200 ] || fail "GET after the deny"

# WebSocket echo (Upgrade passed through).
cx $PY "$APP" ws-client ws://ws/ >"$TMP/ws" 2>&1 || fail "websocket: $(cat "$TMP/ws")"
[ "$(tr '\n' ' ' <"$TMP/ws")" = "one two three " ] || fail "websocket echo: $(cat "$TMP/ws")"

# gRPC unary and bidirectional streaming.
cx $PY "$APP" grpc-client grpc:50051 >"$TMP/grpc" 2>&1 || fail "grpc: $(cat "$TMP/grpc")"
grep -q '^echo:hello$' "$TMP/grpc" || fail "grpc unary: $(cat "$TMP/grpc")"
grep -q '^stream 20 echo:m0 echo:m19$' "$TMP/grpc" || fail "grpc stream: $(cat "$TMP/grpc")"

# wrk (HTTP/1.1) and h2load (HTTP/2, prior knowledge): zero errors.
cx wrk -t1 -c8 -d3s http://shop/ >"$TMP/wrk" 2>&1 || fail "wrk: $(cat "$TMP/wrk")"
grep -q "requests in" "$TMP/wrk" || fail "wrk: $(cat "$TMP/wrk")"
grep -Eq "Socket errors|Non-2xx" "$TMP/wrk" && fail "wrk errors: $(cat "$TMP/wrk")"
cx h2load -n 2000 -c 4 -m 4 http://h2web/ >"$TMP/h2load" 2>&1 || fail "h2load: $(cat "$TMP/h2load")"
grep -q "2000 succeeded, 0 failed, 0 errored" "$TMP/h2load" ||
    fail "h2load: $(grep -E 'requests:|status codes' "$TMP/h2load")"

# Istio's request metrics, from the waypoint.
ip netns exec "$WP_NETNS" curl -s -m 3 http://127.0.0.1:15020/metrics >"$TMP/metrics"
grep -q 'istio_requests_total{reporter="waypoint".*destination_service="shop.default.svc.cluster.local".*response_code="403"' "$TMP/metrics" ||
    fail "no 403 in istio_requests_total: $(grep istio_requests_total "$TMP/metrics" | head -5)"
grep -q 'istio_request_duration_milliseconds_bucket' "$TMP/metrics" || fail "no duration histogram"
grep -q 'source_principal="spiffe://cluster.local/ns/default/sa/client"' "$TMP/metrics" ||
    fail "the caller's identity is not in the labels"
# RequestMirror: each of the 60 requests to web was copied to shop-v2.
MIRRORED=$(sed -n 's/^veil_waypoint_mirrors_total{result="ok"} //p' "$TMP/metrics")
[ "${MIRRORED:-0}" -ge 60 ] || fail "mirrors: $(grep veil_waypoint_mirrors_total "$TMP/metrics")"

# The destination's node proxy (node-2, which has not the waypoint's
# workload) took the caller's identity from the waypoint's CONNECT, not the
# waypoint's own (docs/hbone.md, "The source principal of a waypoint's CONNECT").
grep -q '"direction":"inbound".*"src_principal":"spiffe://cluster.local/ns/default/sa/client".*"via":"spiffe://cluster.local/ns/default/sa/waypoint"' \
    "$D/nodes/node-2.log" || fail "node-2 did not see the caller through the waypoint"
grep -q 'not a waypoint' "$D/nodes/node-2.log" && fail "node-2 did not know the waypoint"

# Remove and add the waypoint under steady traffic: no request fails.
# Each line: status, curl's exit code and error, the time (to find a failure in the logs).
cx sh -c 'i=0; while [ $i -lt 250 ]; do c=$(curl -s -o /dev/null -m 10 -w "%{http_code} %{exitcode} %{errormsg}" http://shop/); echo "$c $(date +%T.%3N)"; i=$((i+1)); sleep 0.02; done' \
    >"$TMP/steady" 2>&1 &
LOAD=$!
sleep 1
"$VEIL" waypoint remove --namespace default >"$TMP/rm" 2>&1 || fail "remove: $(cat "$TMP/rm")"
sleep 1
"$VEIL" waypoint add --namespace default --node node-1 --enroll >"$TMP/wp2" 2>&1 ||
    fail "add again: $(cat "$TMP/wp2")"
wait $LOAD || true
[ "$(wc -l <"$TMP/steady")" -eq 250 ] || fail "steady: $(wc -l <"$TMP/steady") answers of 250"
[ "$(cut -d' ' -f1 "$TMP/steady" | sort -u)" = 200 ] ||
    fail "steady traffic saw failures: $(grep -v '^200 ' "$TMP/steady")"
echo ok
