#!/bin/sh
# Control plane, configuration: apply, label selection and endpoints,
# refusal of bad input with file and line (the last good configuration
# stays), delete, the watched config directory, persistence across restart.
. "$(dirname "$0")/lib.sh"

control_start
M="$E2E_TMP/m"
mkdir -p "$M"

# --- topology: a Service selecting two of three pods, on two nodes
cat >"$M/app.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {nodeName: node-1, serviceAccountName: web}
status: {podIP: 198.18.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec: {nodeName: node-2, serviceAccountName: web}
status: {podIP: 198.18.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: default, labels: {app: db}}
spec: {nodeName: node-2}
status: {podIP: 198.18.2.11}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: later, namespace: default}
spec: {}
Y
"$VEIL" apply -f "$M/app.yaml" >"$E2E_TMP/out" || fail "apply refused: $(cat "$E2E_TMP/out")"
grep -q "Pod/default/web-1 created" "$E2E_TMP/out" || fail "apply output: $(cat "$E2E_TMP/out")"
grep -q "TCPRoute.*kept" "$E2E_TMP/out" || fail "unknown kind not reported as kept"

# Endpoints by label selection, seen in the stream an observer gets.
"$VEIL" debug watch --node node-2 --count 1 >"$E2E_TMP/watch" 2>&1 || fail "watch failed"
python3 - "$E2E_TMP/watch" <<'P' || fail "endpoints wrong: $(cat "$E2E_TMP/watch")"
import json, sys
u = json.loads(open(sys.argv[1]).readline())
items = {i["key"]: i for i in u["upserts"]}
eps = sorted(e["address"] for e in items["Service/default/web"]["spec"]["endpoints"])
assert eps == ["198.18.1.10", "198.18.2.10"], eps
assert "Workload/default/db-1" in items and "Workload/default/web-1" not in items, items.keys()
assert items["Service/default/web"]["spec"]["clusterIP"].startswith("198.19."), items
P

"$VEIL" status --json >"$E2E_TMP/st0" || fail "status failed"
V0=$(json_get 'd["version"]' <"$E2E_TMP/st0")
[ "$(json_get 'len(d["ignored"])' <"$E2E_TMP/st0")" = 1 ] || fail "ignored kind not listed"

# --- bad input: each refused with file and line; nothing changes
bad() { # bad NAME EXPECTED-SUBSTRING  (manifest on stdin)
    cat >"$M/$1.yaml"
    if "$VEIL" apply -f "$M/$1.yaml" >"$E2E_TMP/out" 2>&1; then
        fail "$1: accepted"
    fi
    grep -q "$M/$1.yaml:[0-9][0-9]*:" "$E2E_TMP/out" || fail "$1: no file:line: $(cat "$E2E_TMP/out")"
    grep -q "$2" "$E2E_TMP/out" || fail "$1: reason '$2' missing: $(cat "$E2E_TMP/out")"
    "$VEIL" status --json >"$E2E_TMP/st"
    [ "$(json_get 'd["version"]' <"$E2E_TMP/st")" = "$V0" ] || fail "$1: configuration changed"
    [ "$(json_get 'len(d["workloads"])' <"$E2E_TMP/st")" = 3 ] || fail "$1: workloads changed"
}
printf 'kind: Service\nmetadata:\n  name: x\n  bad: [unclosed\n' | bad syntax "flow"
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: eighty\n' | bad type "port"
printf 'apiVersion: v1\nkind: Service\nspec: {}\n' | bad missing "metadata"
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n' | bad duplicate "uplicate"
cat <<'Y' | bad cidr "ipBlocks"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["198.18.0.0/33"]}}]}]
Y
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: 70000\n' | bad port "port"
cat <<'Y' | bad action "action"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec: {action: PERMIT}
Y
# A good resource next to a bad one: the whole apply is refused.
{ sed 's/web-1/web-9/' "$M/app.yaml"; echo ---; cat "$M/port.yaml"; } >"$M/mixed.yaml"
"$VEIL" apply -f "$M/mixed.yaml" >/dev/null 2>&1 && fail "mixed apply accepted"
"$VEIL" status --json | grep -q web-9 && fail "half of a refused apply is in force"
"$VEIL" status | grep -q "Refused configuration" || fail "status does not list refusals"
"$VEIL" status | grep -q "mixed.yaml" || fail "status does not name the refused file"

# --- delete
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: default}\n' >"$M/del.yaml"
"$VEIL" delete -f "$M/del.yaml" >"$E2E_TMP/out" || fail "delete refused: $(cat "$E2E_TMP/out")"
"$VEIL" status --json | grep -q db-1 && fail "deleted pod still there"

# --- the watched config directory
cat >"$VEIL_STATE_DIR/config/ns.yaml" <<'Y'
apiVersion: v1
kind: Pod
metadata: {name: from-dir, namespace: default, labels: {app: web}}
spec: {nodeName: node-1}
status: {podIP: 198.18.1.20}
Y
eventually '"$VEIL" status --json | grep -q from-dir'
printf 'kind: [broken\n' >"$VEIL_STATE_DIR/config/zz-bad.yaml"
eventually '"$VEIL" status | grep -q "zz-bad.yaml:[0-9]"'
"$VEIL" status --json | grep -q from-dir || fail "a bad file in the directory dropped the good ones"
rm "$VEIL_STATE_DIR/config/zz-bad.yaml"

# --- persistence across a restart
"$VEIL" status --json >"$E2E_TMP/before"
control_stop
control_start
"$VEIL" status --json >"$E2E_TMP/after"
python3 - "$E2E_TMP/before" "$E2E_TMP/after" <<'P' || fail "state lost across restart"
import json, sys
b, a = (json.load(open(f)) for f in sys.argv[1:])
key = lambda d: sorted((w["namespace"], w["name"], w.get("address")) for w in d["workloads"])
assert key(a) == key(b), (key(a), key(b))
assert [s["clusterIP"] for s in a["services"]] == [s["clusterIP"] for s in b["services"]]
assert a["version"] >= b["version"]
P
control_stop
echo "ok"
