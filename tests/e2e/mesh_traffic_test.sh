#!/bin/sh
# Real programs talk across nodes through the mesh: a two-node local
# cluster; on node-2 nginx, redis-server and a python http.server, each
# behind a Service; on node-1 a client pod. curl fetches nginx's page by DNS
# name, redis-benchmark runs against redis with zero errors, the python
# server logs the client pod's own address (transparent inbound), and both
# node proxies count the connections as mutual TLS between the right
# workloads. Needs root; skipped without it or without the node role.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
if "$VEIL" node --name x 2>&1 | grep -q "does not have this role"; then
    echo "skip: this build has no node proxy"
    exit 0
fi
for p in /usr/sbin/nginx redis-server redis-benchmark redis-cli curl python3; do
    command -v "$p" >/dev/null || fail "$p is not installed (scripts/setup installs it)"
done
VEIL=$(readlink -f "$VEIL")
C="t$$"
unset VEIL_STATE_DIR
D="/run/veil/$C"
ST="$D/control"
cluster_cleanup() {
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    cleanup
}
trap cluster_cleanup EXIT
# fail with the end of every log of the cluster (control, node proxies, pods).
failc() {
    for f in "$D"/*.log "$D"/nodes/*.log "$D"/pods/*/*.log; do
        [ -f "$f" ] && tail -n 15 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    fail "$@"
}
metrics() { # metrics NODE
    ip netns exec "veil-$C-$1" curl -s -m 2 "http://127.0.0.1:15020/metrics"
}
vexec() { "$VEIL" exec --cluster "$C" "$@"; }

"$VEIL" cluster create --name "$C" --nodes 2 >"$E2E_TMP/create" 2>&1 ||
    fail "cluster create: $(cat "$E2E_TMP/create")"

# nginx without root paths: everything under the test's own directory.
W="$E2E_TMP/nginx"
mkdir -p "$W/www" "$W/tmp"
MARK="veil-page-$$"
echo "<h1>$MARK</h1>" >"$W/www/index.html"
chmod -R a+rX "$E2E_TMP"
cat >"$W/nginx.conf" <<EOF
worker_processes 1;
pid $W/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log /dev/stdout;
    client_body_temp_path $W/tmp/body;
    proxy_temp_path $W/tmp/proxy;
    fastcgi_temp_path $W/tmp/fastcgi;
    uwsgi_temp_path $W/tmp/uwsgi;
    scgi_temp_path $W/tmp/scgi;
    server { listen 8081; root $W/www; }
}
EOF

run() { # run NODE NAME CMD...
    node=$1 name=$2
    shift 2
    "$VEIL" run --cluster "$C" --node "$node" --name "$name" --label "app=$name" -- "$@" \
        >"$E2E_TMP/run-$name" 2>&1 || failc "veil run $name: $(cat "$E2E_TMP/run-$name")"
}
run node-2 frontend /usr/sbin/nginx -c "$W/nginx.conf" -g 'daemon off;'
run node-2 redis redis-server --port 6379 --save '' --appendonly no --protected-mode no
run node-2 web python3 -m http.server 8080
run node-1 client sleep 600

cat >"$E2E_TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: default}
spec:
  selector: {app: frontend}
  ports: [{name: http, port: 80, targetPort: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: default}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379, targetPort: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
"$VEIL" apply --state-dir "$ST" -f "$E2E_TMP/svc.yaml" >"$E2E_TMP/apply" 2>&1 ||
    fail "apply the Services: $(cat "$E2E_TMP/apply")"

# curl -> nginx, by short name and by FQDN (the node proxy's DNS).
eventually 'vexec client -- curl -fs -m 2 -o /dev/null http://frontend/ 2>/dev/null'
vexec client -- curl -fsS -m 5 http://frontend/ >"$E2E_TMP/page" 2>&1 ||
    failc "curl http://frontend/: $(cat "$E2E_TMP/page")"
grep -q "<h1>$MARK</h1>" "$E2E_TMP/page" || fail "nginx's page: $(head -c 300 "$E2E_TMP/page")"
vexec client -- curl -fsS -m 5 http://frontend.default.svc.cluster.local/ >"$E2E_TMP/page2" 2>&1 ||
    failc "curl by FQDN: $(cat "$E2E_TMP/page2")"
grep -q "$MARK" "$E2E_TMP/page2" || fail "page by FQDN: $(head -c 300 "$E2E_TMP/page2")"

# redis: a round trip, then redis-benchmark with zero errors.
eventually 'vexec client -- redis-cli -h redis PING 2>/dev/null | grep -q PONG'
vexec client -- redis-cli -h redis.default.svc.cluster.local SET veilkey "v$$" >/dev/null
[ "$(vexec client -- redis-cli -h redis GET veilkey)" = "v$$" ] || failc "redis SET/GET"
vexec client -- redis-benchmark -h redis.default.svc.cluster.local -q -n 2000 -c 10 \
    -t set,get >"$E2E_TMP/bench" 2>&1 || failc "redis-benchmark exited non-zero: $(cat "$E2E_TMP/bench")"
tr '\r' '\n' <"$E2E_TMP/bench" >"$E2E_TMP/bench.txt"
grep -q '^ *SET: [0-9.]* requests per second' "$E2E_TMP/bench.txt" ||
    failc "redis-benchmark SET did not finish: $(tail -c 400 "$E2E_TMP/bench.txt")"
grep -q '^ *GET: [0-9.]* requests per second' "$E2E_TMP/bench.txt" ||
    failc "redis-benchmark GET did not finish: $(tail -c 400 "$E2E_TMP/bench.txt")"
grep -qiE 'error|refused|reset' "$E2E_TMP/bench.txt" &&
    failc "redis-benchmark reported errors: $(grep -iE 'error|refused|reset' "$E2E_TMP/bench.txt" | head -n 3)"

# python http.server sees the client pod's own address.
CLIENT_IP=$(json_get 'd["address"]' <"$D/pods/default/client.json")
code=$(vexec client -- curl -s -m 5 -o /dev/null -w '%{http_code}' "http://web/probe-$$")
[ "$code" = 404 ] || failc "curl http://web/probe-$$: HTTP status '$code', expected python's 404"
eventually '"$VEIL" logs --cluster "$C" web 2>&1 | grep -q "^$CLIENT_IP - .*\"GET /probe-$$ HTTP/1.1\" 404"'

# Metrics (counted when a connection ends): node-1 reports the client's
# outbound side, node-2 the servers' inbound side, all mutual TLS. The
# destination side knows the caller by its principal (node-2 is told only
# about its own workloads and the services' endpoints).
P=spiffe://cluster.local/ns/default/sa
src_line() { # src_line DEST
    printf '%s' "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"client\",source_workload_namespace=\"default\",source_principal=\"$P/client\",destination_workload=\"$1\",destination_workload_namespace=\"default\",destination_principal=\"$P/$1\",destination_service=\"$1.default.svc.cluster.local\",connection_security_policy=\"mutual_tls\""
}
dst_re() { # dst_re DEST
    printf '%s' "istio_tcp_connections_opened_total{reporter=\"destination\",.*source_principal=\"$P/client\",destination_workload=\"$1\",destination_workload_namespace=\"default\",destination_principal=\"$P/$1\",destination_service=\"$1.default.svc.cluster.local\",connection_security_policy=\"mutual_tls\""
}
for s in frontend redis web; do
    eventually 'metrics node-1 | grep -qF "$(src_line $s)"'
    eventually 'metrics node-2 | grep -q "$(dst_re $s)"'
done
# redis-benchmark alone opened at least its 10 clients per test.
n=$(metrics node-1 | grep -F "$(src_line redis)" | awk '{print $NF}')
[ "${n:-0}" -ge 20 ] || fail "node-1 counted $n connections to redis, expected >= 20"
metrics node-1 | grep -q 'istio_tcp_connections_opened_total{.*connection_security_policy="none"' &&
    fail "a plaintext connection on node-1: $(metrics node-1 | grep 'security_policy="none"')"
# veil status agrees.
"$VEIL" status --state-dir "$ST" >"$E2E_TMP/status" 2>&1 || fail "veil status: $(cat "$E2E_TMP/status")"
grep -q "default/client on node-1, $CLIENT_IP, runs as $P/client" "$E2E_TMP/status" ||
    fail "status: $(cat "$E2E_TMP/status")"
echo "ok"
