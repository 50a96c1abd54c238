#!/bin/sh
# L4 policy end to end, enforced by the destination's node proxy.
#
# A two-node local cluster: a python web server `web` (app=web) on node-2
# behind Service web; two meshed clients on node-1 with different service
# accounts (`sleep`, `other`) and one plain client (`plain`, --no-mesh:
# not enrolled, no proxy, so it dials web's pod address and lands on
# web's inbound plaintext listener, 15006).
#
# 1. AuthorizationPolicy: DENY on sleep's principal refuses sleep only;
#    replaced by an ALLOW for other's principal only: other passes, sleep
#    (and plaintext, which has no principal) are refused; deleted: all pass.
# 2. PeerAuthentication: PERMISSIVE (none) admits plaintext; STRICT in
#    namespace default refuses it while the meshed clients still pass.
# 3. node-2's counters saw the refusals (veil_node_refused_total).
#
# Every change is checked on NEW connections by polling up to 5 s; the
# observed delay is printed (the issue's "within a second" is documented
# there, not asserted: CI machines are noisy). Needs root.
set -eu

VEIL=${VEIL:-./build/veil}
VEIL=$(readlink -f "$VEIL")
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
if "$VEIL" node --name x 2>&1 | grep -q "does not have this role"; then
    echo "skip: this build has no node proxy"
    exit 0
fi

NAME=$(printf 'p%s' "$$" | cut -c1-16)
DIR=/run/veil/$NAME
TMP=$(mktemp -d /tmp/veil-policy-e2e.XXXXXX)
export VEIL_STATE_DIR=$DIR/control

cleanup() {
    "$VEIL" cluster delete --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$DIR"/nodes/*.log "$DIR"/*.log "$DIR"/pods/default/*.log; do
        [ -f "$f" ] && tail -n 25 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    exit 1
}

now_ms() { date +%s%3N; }

# change apply|delete FILE: changes the configuration, noting the time.
CHANGED=0
change() {
    CHANGED=$(now_ms)
    "$VEIL" "$1" -f "$2" >"$TMP/change.log" 2>&1 || fail "veil $1 -f $2: $(cat "$TMP/change.log")"
}

# eventually_within SECONDS WHAT CMD: polls CMD until it succeeds; prints
# how long after the last `change` (or after the start of the poll) the
# effect showed -- reported, not asserted below the deadline.
eventually_within() {
    _t0=$(now_ms)
    _end=$((_t0 + $1 * 1000))
    [ "$CHANGED" -gt 0 ] || CHANGED=$_t0
    _try=0
    while :; do
        _try=$((_try + 1))
        if eval "$3"; then
            echo "  $2: after $(($(now_ms) - CHANGED)) ms (new connection #$_try)"
            CHANGED=0
            return 0
        fi
        [ "$(now_ms)" -lt "$_end" ] || fail "not within $1 s: $2 ($3)"
        sleep 0.05
    done
}

metrics() { # metrics NODE
    ip netns exec "veil-$NAME-$1" curl -s -m 2 "http://127.0.0.1:15020/metrics"
}

counter() { # counter NODE 'name{labels}': its value, 0 when absent
    metrics "$1" | awk -v k="$2" '$1 == k {v = $2} END {print v + 0}'
}

# Allowed: a 200. Refused: the proxy resets or closes the connection
# without a reply ("Empty reply from server", "Connection reset by peer",
# the latter also while curl is still completing its connect) -- not a
# timeout, nor "connection refused", which would be a broken path rather
# than a refusal by policy.
passes() { # passes POD URL
    "$VEIL" exec --cluster "$NAME" "$1" -- curl -sf -m 3 -o /dev/null "$2" 2>/dev/null
}
refused() { # refused POD URL
    if "$VEIL" exec --cluster "$NAME" "$1" -- curl -sv -m 3 -o /dev/null "$2" >"$TMP/curl" 2>&1; then
        return 1
    fi
    grep -Eq "Empty reply from server|reset by peer" "$TMP/curl"
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

run() { # run NODE NAME [veil run options] -- CMD...
    _node=$1 _name=$2
    shift 2
    "$VEIL" run --cluster "$NAME" --node "$_node" --name "$_name" "$@" >"$TMP/run.log" 2>&1 ||
        fail "veil run $_name: $(cat "$TMP/run.log")"
}
run node-2 web --service-account web --label app=web -- python3 -m http.server 8080
run node-1 sleep --service-account sleep -- sleep 600
run node-1 other --service-account other -- sleep 600
run node-1 plain --no-mesh -- sleep 600
WEB_IP=$(python3 -c "import json; print(json.load(open('$DIR/pods/default/web.json'))['address'])")

cat >"$TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
"$VEIL" apply -f "$TMP/svc.yaml" >/dev/null || fail "apply the Service"

SVC=http://web.default.svc.cluster.local/
POD=http://$WEB_IP:8080/

echo "baseline: no policy, PERMISSIVE"
eventually_within 15 "sleep reaches web" 'passes sleep "$SVC"'
eventually_within 15 "other reaches web" 'passes other "$SVC"'
eventually_within 15 "plain reaches web's pod address in plaintext" 'passes plain "$POD"'
passes sleep "$POD" || fail "sleep -> web's pod address"

# --- AuthorizationPolicy ------------------------------------------------

DENIED0=$(counter node-2 'veil_node_refused_total{reason="authz_denied"}')

cat >"$TMP/deny.yaml" <<'EOF'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-access, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]}]
EOF
echo "DENY principal sleep"
change apply "$TMP/deny.yaml"
eventually_within 5 "sleep refused" 'refused sleep "$SVC"'
passes other "$SVC" || fail "DENY sleep: other refused"
refused sleep "$POD" || fail "DENY sleep: sleep allowed on the pod address"
passes plain "$POD" || fail "DENY sleep: plaintext (no principal) refused"
D=$(counter node-2 'veil_node_refused_total{reason="authz_denied"}')
[ "$D" -gt "$DENIED0" ] || fail "authz_denied not counted on node-2 ($DENIED0 -> $D)"
metrics node-2 | grep 'istio_tcp_connections_opened_total{reporter="destination"' |
    grep 'source_principal="spiffe://cluster.local/ns/default/sa/sleep"' |
    grep -q 'response_flags="DENY"' || fail "no DENY connection reported for sleep on node-2"
# The source side saw the CONNECT refused (401) and closed sleep's connection.
metrics node-1 | grep 'istio_tcp_connections_opened_total{reporter="source"' |
    grep 'source_principal="spiffe://cluster.local/ns/default/sa/sleep"' |
    grep -q 'response_flags="DENY"' || fail "node-1 did not report sleep's connection as denied"

# Same policy name: the ALLOW replaces the DENY.
cat >"$TMP/allow.yaml" <<'EOF'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-access, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/other"]}}]}]
EOF
echo "ALLOW principal other only"
D1=$(counter node-2 'veil_node_refused_total{reason="authz_denied"}')
change apply "$TMP/allow.yaml"
eventually_within 5 "plaintext refused (no principal)" 'refused plain "$POD"'
refused sleep "$SVC" || fail "ALLOW other: sleep not refused"
passes other "$SVC" || fail "ALLOW other: other refused"
D2=$(counter node-2 'veil_node_refused_total{reason="authz_denied"}')
[ "$D2" -ge $((D1 + 2)) ] || fail "authz_denied not counted for sleep and plain ($D1 -> $D2)"

echo "policy deleted"
change delete "$TMP/allow.yaml"
eventually_within 5 "sleep passes again" 'passes sleep "$SVC"'
passes other "$SVC" || fail "no policy: other refused"
passes plain "$POD" || fail "no policy: plaintext refused"

# --- PeerAuthentication -------------------------------------------------

STRICT0=$(counter node-2 'veil_node_refused_total{reason="strict_mtls"}')
cat >"$TMP/strict.yaml" <<'EOF'
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
EOF
echo "PeerAuthentication STRICT in default"
change apply "$TMP/strict.yaml"
eventually_within 5 "plaintext refused" 'refused plain "$POD"'
passes sleep "$SVC" || fail "STRICT: meshed sleep refused"
passes other "$SVC" || fail "STRICT: meshed other refused"
passes other "$POD" || fail "STRICT: meshed other refused on the pod address"
S=$(counter node-2 'veil_node_refused_total{reason="strict_mtls"}')
[ "$S" -gt "$STRICT0" ] || fail "strict_mtls not counted on node-2 ($STRICT0 -> $S)"
metrics node-2 | grep 'istio_tcp_connections_opened_total{reporter="destination"' |
    grep 'connection_security_policy="none"' |
    grep -q 'response_flags="DENY"' || fail "no plaintext DENY connection reported on node-2"

echo "PeerAuthentication deleted (PERMISSIVE)"
change delete "$TMP/strict.yaml"
eventually_within 5 "plaintext admitted again" 'passes plain "$POD"'

# The app saw the plain client's own address.
PLAIN_IP=$(python3 -c "import json; print(json.load(open('$DIR/pods/default/plain.json'))['address'])")
"$VEIL" logs --cluster "$NAME" web 2>&1 | grep -q "^$PLAIN_IP - " ||
    fail "web never saw $PLAIN_IP"

stop_nodes_clean
echo "PASS: node_policy_test"
