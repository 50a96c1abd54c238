#!/bin/sh
# HBONE interop: an HTTP/2 implementation that is not ours (python3-h2,
# tests/e2e/hbone_client.py) opens an HBONE CONNECT to a meshed pod's
# 15008 and reaches the app, with a certificate from `veil ca issue`; a
# certificate from another CA and no certificate at all are refused.
# Then bad input (the issue's "bad input" line): a GET instead of CONNECT,
# a CONNECT without :authority, a CONNECT to one of the proxy's own ports
# or to another address, garbage instead of TLS, garbage instead of the
# HTTP/2 preface -- each refused and counted on node-2 -- and afterwards a
# good CONNECT still works.
#
# The client runs in a --no-mesh pod on node-1 (a plain netns that routes
# to the pods; nothing captures its traffic). Needs root, and python3-h2
# for Debian's /usr/bin/python3 (the python3 on PATH may be another one).
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
if "$VEIL" node --name x 2>&1 | grep -q "does not have this role"; then
    echo "skip: this build has no node proxy"
    exit 0
fi
"$PY" -c 'import h2' 2>/dev/null || { echo "FAIL: $PY cannot import h2 (python3-h2)" >&2; exit 1; }

NAME=$(printf 'h%s' "$$" | cut -c1-16)
DIR=/run/veil/$NAME
TMP=$(mktemp -d /tmp/veil-hbone-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control

cleanup() {
    "$VEIL" cluster delete --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$TMP/out" ] && sed 's/^/    client: /' "$TMP/out" >&2
    for f in "$DIR"/nodes/*.log "$DIR"/*.log "$DIR"/pods/default/*.log; do
        [ -f "$f" ] && tail -n 25 "$f" | sed "s|^|    $(basename "$f"): |" >&2
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
    ip netns exec "veil-$NAME-$1" curl -s -m 2 "http://127.0.0.1:15020/metrics"
}
counter() { # counter NODE 'name{labels}': its value, 0 when absent
    metrics "$1" | awk -v k="$2" '$1 == k {v = $2} END {print v + 0}'
}
# counted NODE 'name{labels}' BEFORE: the counter moved past BEFORE
# (metrics are synced from the loop, so poll briefly).
counted() {
    _cn=$1 _ck=$2 _cv=$3
    eventually '[ "$(counter "$_cn" "$_ck")" -gt "$_cv" ]'
}

# stop_nodes_clean: SIGTERM to both node proxies (ours: started by this
# test's cluster), wait for them to exit, and check that their logs hold no
# sanitizer report (the ASan build reports leaks at exit, into the log
# that `cluster delete` would remove).
stop_nodes_clean() {
    for i in 1 2; do
        _pid=$(cat "$DIR/nodes/node-$i.pid")
        kill -0 "$_pid" 2>/dev/null || fail "node-$i's proxy died"
        kill -TERM "$_pid"
        _n=0
        while [ -d "/proc/$_pid" ] && ! grep -q '^State:.*Z' "/proc/$_pid/status" 2>/dev/null; do
            _n=$((_n + 1))
            [ "$_n" -le 100 ] || fail "node-$i's proxy did not exit on SIGTERM"
            sleep 0.1
        done
        if grep -Eq "Sanitizer|runtime error:" "$DIR/nodes/node-$i.log"; then
            fail "node-$i: sanitizer report: $(grep -E -A30 'Sanitizer|runtime error:' "$DIR/nodes/node-$i.log")"
        fi
    done
}

"$VEIL" cluster create --name "$NAME" --nodes 2 >"$TMP/create.log" 2>&1 ||
    fail "cluster create: $(cat "$TMP/create.log")"
"$VEIL" run --cluster "$NAME" --node node-2 --name web --service-account web \
    --label app=web -- python3 -m http.server 8080 >"$TMP/run.log" 2>&1 ||
    fail "veil run web: $(cat "$TMP/run.log")"
"$VEIL" run --cluster "$NAME" --node node-1 --name ext --no-mesh -- sleep 600 >"$TMP/run.log" 2>&1 ||
    fail "veil run ext: $(cat "$TMP/run.log")"
pod_ip() {
    python3 -c "import json; print(json.load(open('$DIR/pods/default/$1.json'))['address'])"
}
WEB_IP=$(pod_ip web)
EXT_IP=$(pod_ip ext)
WEB_ID=spiffe://cluster.local/ns/default/sa/web

# The mesh's certificate for an outside client, spiffe://.../sa/ext.
"$VEIL" ca issue --state-dir "$DIR/control" --namespace default --service-account ext \
    --out "$TMP/ext" >"$TMP/ca.log" 2>&1 || fail "veil ca issue: $(cat "$TMP/ca.log")"
for f in key.pem cert-chain.pem root-cert.pem; do
    [ -s "$TMP/ext/$f" ] || fail "veil ca issue wrote no $f"
done

# Another CA, and a leaf with the same kind of SPIFFE ID signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/O=evil/CN=evil root CA" -keyout "$TMP/evil-ca.key" -out "$TMP/evil-ca.pem" \
    >/dev/null 2>&1 || fail "openssl: the foreign CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=evil" \
    -keyout "$TMP/evil.key" -out "$TMP/evil.csr" >/dev/null 2>&1 || fail "openssl: the CSR"
printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/ext\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,serverAuth\n' >"$TMP/evil.ext"
openssl x509 -req -in "$TMP/evil.csr" -CA "$TMP/evil-ca.pem" -CAkey "$TMP/evil-ca.key" \
    -CAcreateserial -days 1 -extfile "$TMP/evil.ext" -out "$TMP/evil.pem" >/dev/null 2>&1 ||
    fail "openssl: the foreign leaf"

# client ARGS...: hbone_client.py from the ext pod to web's 15008; its
# `key: value` lines land in $TMP/out.
client() {
    "$VEIL" exec --cluster "$NAME" ext -- "$PY" "$HERE/hbone_client.py" \
        --addr "$WEB_IP" --ca "$TMP/ext/root-cert.pem" "$@" >"$TMP/out" 2>&1
}
# client_good ARGS...: with the mesh's certificate, checking web's identity.
client_good() {
    client --cert "$TMP/ext/cert-chain.pem" --key "$TMP/ext/key.pem" --expect-id "$WEB_ID" "$@"
}

# --- interop: a good CONNECT reaches the app -----------------------------

# The pod's certificate may take a moment (15008 accepts once it is there).
eventually 'client_good --path "/?interop-1"'
grep -qx "tls: ok $WEB_ID" "$TMP/out" || fail "server identity"
grep -qx "status: 200" "$TMP/out" || fail "CONNECT not answered 200"
grep -q "^http: HTTP/1.[01] 200 " "$TMP/out" || fail "no HTTP 200 through the tunnel"
# The app saw the client pod's own address (transparent upstream).
eventually 'grep -q "^$EXT_IP - .*\"GET /?interop-1 HTTP/1.1\" 200" "$DIR/pods/default/web.log"'
eventually 'metrics node-2 | grep "istio_tcp_connections_closed_total{reporter=\"destination\"" | grep "source_principal=\"spiffe://cluster.local/ns/default/sa/ext\"" | grep -q "connection_security_policy=\"mutual_tls\",response_flags=\"-\""'
echo "  python3-h2 CONNECT through node-2's HBONE server: ok"

# --- refused certificates -------------------------------------------------

HS='veil_node_hbone_handshake_failures_total{side="server"}'
N=$(counter node-2 "$HS")
client --cert "$TMP/evil.pem" --key "$TMP/evil.key" --expect refused ||
    fail "a certificate from another CA was not refused"
grep -q "^tls: refused" "$TMP/out" || fail "foreign CA: $(cat "$TMP/out")"
counted node-2 "$HS" "$N"
N=$(counter node-2 "$HS")
client --expect refused || fail "no client certificate was not refused"
grep -q "^tls: refused" "$TMP/out" || fail "no client certificate: $(cat "$TMP/out")"
counted node-2 "$HS" "$N"
echo "  foreign CA and no client certificate: refused and counted"

# --- bad input ------------------------------------------------------------

BAD='veil_node_hbone_bad_requests_total{side="server"}'
N=$(counter node-2 "$BAD")
client_good --request get --expect status || fail "GET instead of CONNECT"
grep -Eqx "status: 400|reset: .*" "$TMP/out" || fail "GET instead of CONNECT: not 400 nor reset"
grep -qx "status: 200" "$TMP/out" && fail "GET instead of CONNECT answered 200"
counted node-2 "$BAD" "$N"

N=$(counter node-2 "$BAD")
client_good --request no-authority --expect status || fail "CONNECT without :authority"
grep -Eqx "status: 400|reset: .*" "$TMP/out" || fail "CONNECT without :authority: not 400 nor reset"
grep -qx "status: 200" "$TMP/out" && fail "CONNECT without :authority answered 200"
counted node-2 "$BAD" "$N"

DEST='veil_node_refused_total{reason="bad_destination"}'
for authority in "$WEB_IP:15001" "$WEB_IP:15008" "$EXT_IP:8080"; do
    N=$(counter node-2 "$DEST")
    client_good --authority "$authority" --expect status || fail "CONNECT $authority"
    grep -qx "status: 400" "$TMP/out" || fail "CONNECT $authority: not 400"
    counted node-2 "$DEST" "$N"
done
echo "  GET, CONNECT without :authority, CONNECT to 15001/15008/another address: refused and counted"

N=$(counter node-2 "$HS")
client --garbage tcp || fail "garbage instead of TLS: connection not closed"
counted node-2 "$HS" "$N"

PROTO='veil_node_hbone_protocol_errors_total{side="server"}'
N=$(counter node-2 "$PROTO")
client --cert "$TMP/ext/cert-chain.pem" --key "$TMP/ext/key.pem" --garbage tls ||
    fail "garbage instead of the HTTP/2 preface: connection not closed"
counted node-2 "$PROTO" "$N"
echo "  garbage instead of TLS / of the HTTP/2 preface: closed and counted"

# --- the proxy keeps serving ---------------------------------------------

client_good --path "/?interop-2" || fail "a good CONNECT after the bad input"
eventually 'grep -q "^$EXT_IP - .*\"GET /?interop-2 HTTP/1.1\" 200" "$DIR/pods/default/web.log"'
kill -0 "$(cat "$DIR/nodes/node-2.pid")" || fail "node-2's proxy is gone"

stop_nodes_clean
echo "PASS: node_hbone_interop_test"
