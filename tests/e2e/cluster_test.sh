#!/bin/sh
# Local cluster plumbing: `veil cluster create` (no node proxies) builds the
# hub, two nodes and the control plane; a python http.server pod on node-2
# answers a curl from a pod on node-1 (both --no-mesh) through `veil exec`;
# `veil logs` shows the server's output; a meshed pod without a node proxy
# is refused and rolled back; each bridge keeps a fixed MAC address as pods
# come and go; `veil cluster delete` leaves nothing behind.
# Needs root (network namespaces): skipped otherwise.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
C="e2e$$"
unset VEIL_STATE_DIR
# A process that exists and is not a zombie.
running() {
    [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'
}
cluster_cleanup() {
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    cleanup
}
trap cluster_cleanup EXIT

"$VEIL" cluster create --name "$C" --nodes 2 --no-proxies >"$E2E_TMP/create" 2>&1 ||
    fail "cluster create: $(cat "$E2E_TMP/create")"
grep -q "veil run --cluster $C" "$E2E_TMP/create" || fail "no usage guide: $(cat "$E2E_TMP/create")"
for ns in "veil-$C" "veil-$C-node-1" "veil-$C-node-2"; do
    ip netns list | grep -qx "$ns\( .*\)\?" || fail "netns $ns missing"
done
[ -S "/run/veil/$C/control/control.sock" ] || fail "no control plane socket"
kill -0 "$(cat "/run/veil/$C/control.pid")" || fail "control plane not running"
"$VEIL" cluster create --name "$C" >"$E2E_TMP/again" 2>&1 && fail "a second create succeeded"
grep -q "already exists" "$E2E_TMP/again" || fail "second create: $(cat "$E2E_TMP/again")"

# A server on node-2, a client on node-1.
"$VEIL" run --cluster "$C" --node node-2 --name web --no-mesh -- \
    python3 -m http.server 8080 >"$E2E_TMP/run1" 2>&1 || fail "run web: $(cat "$E2E_TMP/run1")"
grep -q "at 198.18.2.10" "$E2E_TMP/run1" || fail "web address: $(cat "$E2E_TMP/run1")"
"$VEIL" run --cluster "$C" --node node-1 --name client --namespace shop --no-mesh -- \
    sleep 600 >"$E2E_TMP/run2" 2>&1 || fail "run client: $(cat "$E2E_TMP/run2")"
grep -q "at 198.18.1.10" "$E2E_TMP/run2" || fail "client address: $(cat "$E2E_TMP/run2")"
"$VEIL" run --cluster "$C" --node node-1 --name web --no-mesh -- true >/dev/null 2>&1 &&
    fail "a second pod default/web was accepted"
"$VEIL" run --cluster "$C" --node node-9 --name x --no-mesh -- true >"$E2E_TMP/bad" 2>&1 &&
    fail "node-9 accepted"
grep -q "no node 'node-9'" "$E2E_TMP/bad" || fail "node-9: $(cat "$E2E_TMP/bad")"

eventually '"$VEIL" exec --cluster "$C" -n shop client -- curl -s -m 2 -o /dev/null http://198.18.2.10:8080/'
"$VEIL" exec --cluster "$C" --namespace shop client -- curl -s -m 5 http://198.18.2.10:8080/ \
    >"$E2E_TMP/page" || fail "curl across nodes"
grep -q "Directory listing" "$E2E_TMP/page" || fail "page: $(head -c 300 "$E2E_TMP/page")"
# The pod's resolv.conf, and the pod's exit status comes back.
"$VEIL" exec --cluster "$C" -n shop client -- cat /etc/resolv.conf | grep -q "search shop.svc.cluster.local" ||
    fail "resolv.conf"
"$VEIL" exec --cluster "$C" -n shop client -- sh -c 'exit 7' && fail "exit status lost"
[ $? = 7 ] || fail "exit status is not 7"
# Both reach the control plane's status port on the hub.
"$VEIL" exec --cluster "$C" web -- curl -s -m 5 http://198.18.0.1:15014/healthz | grep -q ok ||
    fail "control plane unreachable from a pod"

"$VEIL" logs --cluster "$C" web >"$E2E_TMP/logs" || fail "logs"
grep -q '"GET / HTTP/1.1" 200' "$E2E_TMP/logs" || fail "logs: $(cat "$E2E_TMP/logs")"
"$VEIL" logs --cluster "$C" nosuch >/dev/null 2>&1 && fail "logs of a missing pod"

# A meshed pod needs a node proxy: refused, and nothing of it stays.
"$VEIL" run --cluster "$C" --node node-1 --name meshed -- sleep 600 >"$E2E_TMP/m" 2>&1 &&
    fail "meshed pod without node proxy accepted"
grep -q "node proxy of node-1" "$E2E_TMP/m" || fail "meshed: $(cat "$E2E_TMP/m")"
[ ! -e "/run/veil/$C/pods/default/meshed.json" ] || fail "meshed pod record left"
ip netns list | grep -q "veil-$C-pod-1-11" && fail "meshed pod netns left"
"$VEIL" status --state-dir "/run/veil/$C/control" | grep -q meshed && fail "meshed pod still registered"

# veil rm, then delete everything.
"$VEIL" rm --cluster "$C" web >/dev/null || fail "rm web"
ip netns list | grep -q "veil-$C-pod-2-10" && fail "rm left the netns"
# Each bridge keeps its own MAC address as pods come and go (a bridge
# without one takes its lowest port's, and the pods' gateway entries go stale).
mac() { ip -n "$1" -o link show br0 | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p'; }
[ "$(mac "veil-$C")" = 02:00:c6:12:00:01 ] || fail "hub bridge MAC $(mac "veil-$C")"
[ "$(mac "veil-$C-node-1")" = 02:00:c6:12:01:01 ] || fail "node-1 bridge MAC $(mac "veil-$C-node-1")"
[ "$(mac "veil-$C-node-2")" = 02:00:c6:12:02:01 ] || fail "node-2 bridge MAC $(mac "veil-$C-node-2")"
CPID=$(cat "/run/veil/$C/control.pid")
"$VEIL" cluster delete --name "$C" >"$E2E_TMP/del" 2>&1 || fail "delete: $(cat "$E2E_TMP/del")"
ip netns list | grep -q "veil-$C" && fail "netns left: $(ip netns list | grep "veil-$C")"
[ ! -e "/run/veil/$C" ] || fail "/run/veil/$C left"
ls /etc/netns 2>/dev/null | grep -q "veil-$C" && fail "/etc/netns entries left"
running "$CPID" && fail "control plane still running"
for p in $(pgrep -x sleep); do
    running "$p" && [ "$(readlink "/proc/$p/ns/net")" != "$(readlink /proc/self/ns/net)" ] &&
        grep -q 600 "/proc/$p/cmdline" && fail "pod process $p left"
done
ip -o link show | grep -E "@|veth" | grep -q "n1\|p10" && fail "veth left in the root netns"
"$VEIL" cluster delete --name "$C" >/dev/null 2>&1 && fail "deleting a deleted cluster succeeded"
echo "ok"
