#!/bin/sh
# Control plane, push: two subscribed proxies both get a change; a rejected
# version shows in `veil status` with its reason; a proxy that reconnects
# from its version gets only what changed; `veil ca issue` certificates
# verify against the trust bundle and carry exactly the right URI SAN.
. "$(dirname "$0")/lib.sh"

control_start
M="$E2E_TMP/m"
mkdir -p "$M"
pod() { # pod NAME NODE IP
    printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: {app: web}}\nspec: {nodeName: %s, serviceAccountName: web}\nstatus: {podIP: %s}\n---\n' "$1" "$2" "$3"
}
{
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n---\n'
    pod a-1 node-1 198.18.1.10
    pod b-1 node-2 198.18.2.10
} >"$M/v1.yaml"
"$VEIL" apply -f "$M/v1.yaml" >/dev/null || fail "apply"

# Two proxies (acknowledging like node proxies) and one that rejects.
"$VEIL" debug watch --node node-1 --ack >"$E2E_TMP/w1" 2>&1 &
"$VEIL" debug watch --node node-2 --ack >"$E2E_TMP/w2" 2>&1 &
"$VEIL" debug watch --node node-3 --nack "cannot program the dataplane" >"$E2E_TMP/w3" 2>&1 &
eventually '[ "$(wc -l <"$E2E_TMP/w1")" -ge 1 ] && [ "$(wc -l <"$E2E_TMP/w2")" -ge 1 ]'
eventually '"$VEIL" status | grep -q "node-1: connected, up to date"'
eventually '"$VEIL" status | grep -q "node-2: connected, up to date"'

# One change reaches both.
sed 's/198.18.2.10/198.18.2.99/' "$M/v1.yaml" >"$M/v2.yaml"
"$VEIL" apply -f "$M/v2.yaml" >/dev/null || fail "apply v2"
eventually 'grep -q 198.18.2.99 "$E2E_TMP/w1" && grep -q 198.18.2.99 "$E2E_TMP/w2"'
V=$("$VEIL" status --json | json_get 'd["version"]')
eventually '"$VEIL" status --json | python3 -c "import json,sys; d=json.load(sys.stdin); assert all(n[\"acked\"] == $V for n in d[\"nodes\"] if n[\"name\"] in (\"node-1\", \"node-2\"))"'

# The rejection is in status, with its reason.
eventually '"$VEIL" status | grep -q "REJECTED version .*: cannot program the dataplane"'
"$VEIL" status --json | grep -q '"rejectReason": "cannot program the dataplane"' || fail "json status lacks rejection"

# node-1 goes away at version V; one workload changes; it comes back at V.
kill %1 2>/dev/null || true
pkill -f "debug watch --node node-1" || true
eventually '"$VEIL" status | grep -q "node-1: not connected"'
sed 's/198.18.1.10/198.18.1.77/' "$M/v2.yaml" >"$M/v3.yaml"
"$VEIL" apply -f "$M/v3.yaml" >/dev/null || fail "apply v3"
"$VEIL" debug watch --node node-1 --ack --version "$V" --count 1 >"$E2E_TMP/w1b" 2>&1 ||
    fail "resume failed: $(cat "$E2E_TMP/w1b")"
python3 - "$E2E_TMP/w1b" <<'P' || fail "resume sent more than the change: $(cat "$E2E_TMP/w1b")"
import json, sys
u = json.loads(open(sys.argv[1]).readline())
assert u["full"] is False, u
keys = sorted(i["key"] for i in u["upserts"])
# a-1 moved: its workload item and the service's endpoints changed, nothing else.
assert keys == ["Service/default/web", "Workload/default/a-1"], keys
assert u["removals"] == [], u
P

# veil ca issue: verifies against the bundle, exactly one URI SAN.
"$VEIL" ca issue --namespace default --service-account web --out "$E2E_TMP/cert" >/dev/null ||
    fail "ca issue"
openssl verify -CAfile "$VEIL_STATE_DIR/ca/bundle.pem" "$E2E_TMP/cert/cert-chain.pem" >/dev/null ||
    fail "issued certificate does not verify"
openssl x509 -in "$E2E_TMP/cert/cert-chain.pem" -noout -ext subjectAltName >"$E2E_TMP/san"
[ "$(grep -o 'URI:[^,]*' "$E2E_TMP/san")" = "URI:spiffe://cluster.local/ns/default/sa/web" ] ||
    fail "SAN: $(cat "$E2E_TMP/san")"
[ "$(grep -c 'URI:' "$E2E_TMP/san")" = 1 ] || fail "more than one URI SAN"
[ "$(stat -c %a "$E2E_TMP/cert/key.pem")" = 600 ] || fail "key.pem is not 0600"

control_stop
echo "ok"
