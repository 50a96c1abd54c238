#!/bin/sh
# Local cluster with node proxies: `veil cluster create` starts the control
# plane and one `veil node` per node and waits for their readiness; two
# meshed pods on different nodes are registered (veil status), enrolled
# (the capture table is in their netns) and talk; `veil cluster delete`
# leaves nothing. Needs root; skipped without it or without the node role.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
if "$VEIL" node --name x 2>&1 | grep -q "does not have this role"; then
    echo "skip: this build has no node proxy"
    exit 0
fi
C="m$$"
unset VEIL_STATE_DIR
ST="/run/veil/$C/control"
running() {
    [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'
}
cluster_cleanup() {
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    cleanup
}
trap cluster_cleanup EXIT
show_logs() {
    for f in /run/veil/"$C"/*.log /run/veil/"$C"/nodes/*.log; do
        [ -f "$f" ] && tail -n 20 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    return 0
}

"$VEIL" cluster create --name "$C" --nodes 2 >"$E2E_TMP/create" 2>&1 ||
    fail "cluster create: $(cat "$E2E_TMP/create")"
for i in 1 2; do
    ip netns exec "veil-$C-node-$i" curl -fs -m 2 http://127.0.0.1:15021/healthz/ready >/dev/null ||
        fail "node-$i not ready after create"
done
"$VEIL" run --cluster "$C" --node node-1 --name web --label app=web -- \
    python3 -m http.server 8080 >"$E2E_TMP/r1" 2>&1 || { show_logs; fail "run web: $(cat "$E2E_TMP/r1")"; }
"$VEIL" run --cluster "$C" --node node-2 --name client -- sleep 600 >"$E2E_TMP/r2" 2>&1 ||
    { show_logs; fail "run client: $(cat "$E2E_TMP/r2")"; }
ip netns exec "veil-$C-pod-1-10" nft list table inet veil | grep -q "redirect to :15006" ||
    fail "no capture in web's netns"
"$VEIL" status --state-dir "$ST" >"$E2E_TMP/status"
grep -q "default/web on node-1, 198.18.1.10" "$E2E_TMP/status" || fail "status: $(cat "$E2E_TMP/status")"
grep -q "default/client on node-2, 198.18.2.10" "$E2E_TMP/status" || fail "status: $(cat "$E2E_TMP/status")"
eventually '"$VEIL" exec --cluster "$C" client -- curl -s -m 2 -o /dev/null http://198.18.1.10:8080/'
"$VEIL" exec --cluster "$C" client -- curl -s -m 5 http://198.18.1.10:8080/ >"$E2E_TMP/page" ||
    { show_logs; fail "curl across nodes through the proxies"; }
grep -q "Directory listing" "$E2E_TMP/page" || fail "page: $(head -c 300 "$E2E_TMP/page")"
# The app saw the client's own address (transparent inbound).
eventually '"$VEIL" logs --cluster "$C" web | grep -q "^198.18.2.10 .*GET / HTTP/1.1\" 200"'

PIDS="$(cat "/run/veil/$C/control.pid") $(cat /run/veil/"$C"/nodes/*.pid)"
"$VEIL" cluster delete --name "$C" >"$E2E_TMP/del" 2>&1 || fail "delete: $(cat "$E2E_TMP/del")"
ip netns list | grep -q "veil-$C" && fail "netns left: $(ip netns list | grep "veil-$C")"
[ ! -e "/run/veil/$C" ] || fail "/run/veil/$C left"
for p in $PIDS; do
    running "$p" && fail "process $p left"
done
echo "ok"
