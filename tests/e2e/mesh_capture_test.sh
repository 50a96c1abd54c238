#!/bin/sh
# What an eavesdropper sees: tcpdump on the client pod's eth0 (and on the
# server pod's) while the client sends a marker string to a python
# http.server and to redis-server on the other node. The capture must show
# a TLS 1.3 handshake to port 15008 (ClientHello offering 0x0304, ServerHello
# choosing it), TLS application data both ways, no TCP or UDP to any other
# port, and not one copy of the marker, while the servers did get it (their
# log, redis' answer). Needs root and tcpdump; skipped without them.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2"
    exit 0
fi
if "$VEIL" node --name x 2>&1 | grep -q "does not have this role"; then
    echo "skip: this build has no node proxy"
    exit 0
fi
for p in tcpdump redis-server redis-cli curl python3; do
    command -v "$p" >/dev/null || fail "$p is not installed (scripts/setup installs it)"
done
VEIL=$(readlink -f "$VEIL")
C="c$$"
unset VEIL_STATE_DIR
D="/run/veil/$C"
TCPDUMP_PIDS=""
cluster_cleanup() {
    for p in $TCPDUMP_PIDS; do kill "$p" 2>/dev/null || true; done
    "$VEIL" cluster delete --name "$C" >/dev/null 2>&1 || true
    cleanup
}
trap cluster_cleanup EXIT
failc() {
    for f in "$D"/nodes/*.log "$D"/pods/*/*.log "$E2E_TMP"/*.err; do
        [ -f "$f" ] && tail -n 15 "$f" | sed "s|^|    $(basename "$f"): |" >&2
    done
    fail "$@"
}
vexec() { "$VEIL" exec --cluster "$C" "$@"; }
run() { # run NODE NAME CMD...
    node=$1 name=$2
    shift 2
    "$VEIL" run --cluster "$C" --node "$node" --name "$name" --label "app=$name" -- "$@" \
        >"$E2E_TMP/run-$name" 2>&1 || failc "veil run $name: $(cat "$E2E_TMP/run-$name")"
}
netns_of() { json_get 'd["netns"]' <"$D/pods/default/$1.json"; }

"$VEIL" cluster create --name "$C" --nodes 2 >"$E2E_TMP/create" 2>&1 ||
    fail "cluster create: $(cat "$E2E_TMP/create")"
run node-2 web python3 -m http.server 8080
run node-2 redis redis-server --port 6379 --save '' --appendonly no --protected-mode no
run node-1 warmup sleep 600
cat >"$E2E_TMP/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: default}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379, targetPort: 6379}]
EOF
"$VEIL" apply --state-dir "$D/control" -f "$E2E_TMP/svc.yaml" >"$E2E_TMP/apply" 2>&1 ||
    fail "apply the Services: $(cat "$E2E_TMP/apply")"
# Another pod waits until both servers answer through the mesh, so the
# client's own first connection (captured from its first packet) is the
# real one.
eventually 'vexec warmup -- curl -s -m 2 -o /dev/null http://web/ 2>/dev/null'
eventually 'vexec warmup -- redis-cli -h redis PING 2>/dev/null | grep -q PONG'

run node-1 client sleep 600
capture() { # capture NAME: tcpdump on eth0 of pod NAME into $E2E_TMP/NAME.pcap
    ip netns exec "$(netns_of "$1")" tcpdump -Z root -i eth0 -n -U -s 0 -w "$E2E_TMP/$1.pcap" \
        2>"$E2E_TMP/tcpdump-$1.err" &
    TCPDUMP_PIDS="$TCPDUMP_PIDS $!"
    err="$E2E_TMP/tcpdump-$1.err"
    eventually 'grep -qs "listening on eth0" "$err"'
}
capture client
capture web

MARKER="VEIL-MARKER-$$-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
code=$(vexec client -- curl -s -m 5 -o /dev/null -w '%{http_code}' -H "X-Marker: $MARKER" \
    "http://web/$MARKER") || true
[ "$code" = 404 ] || failc "curl http://web/$MARKER: HTTP status '$code', expected python's 404"
vexec client -- redis-cli -h redis SET markerkey "$MARKER" >"$E2E_TMP/set" 2>&1 ||
    failc "redis SET: $(cat "$E2E_TMP/set")"
[ "$(vexec client -- redis-cli -h redis GET markerkey)" = "$MARKER" ] || failc "redis GET"
# The marker did reach the servers, with the client's own address.
CLIENT_IP=$(json_get 'd["address"]' <"$D/pods/default/client.json")
eventually '"$VEIL" logs --cluster "$C" web 2>&1 | grep -qF "$CLIENT_IP - - "'
"$VEIL" logs --cluster "$C" web 2>&1 | grep -qF "\"GET /$MARKER HTTP/1.1\" 404" ||
    failc "the marker is not in the web server's log"

sleep 0.5 # let -U flush the last packets
for p in $TCPDUMP_PIDS; do kill -INT "$p" 2>/dev/null || true; done
for p in $TCPDUMP_PIDS; do wait "$p" 2>/dev/null || true; done
TCPDUMP_PIDS=""

for f in client web; do
    pcap="$E2E_TMP/$f.pcap"
    [ -s "$pcap" ] || failc "no capture from $f: $(cat "$E2E_TMP/tcpdump-$f.err")"
    n=$(grep -aFc "$MARKER" "$pcap" || true)
    [ "$n" = 0 ] || fail "the marker is in $n line(s) of the raw capture on $f's eth0"
    tcpdump -r "$pcap" -n -A 2>/dev/null >"$E2E_TMP/$f.txt"
    grep -qF "$MARKER" "$E2E_TMP/$f.txt" && fail "the marker is in 'tcpdump -A' of $f's eth0"
    [ "$(tcpdump -r "$pcap" -n 'tcp port 15008' 2>/dev/null | wc -l)" -gt 0 ] ||
        fail "no packet to or from port 15008 on $f's eth0"
    python3 - "$pcap" "$MARKER" >"$E2E_TMP/$f.check" 2>&1 <<'EOF' ||
import struct, sys

path, marker = sys.argv[1], sys.argv[2].encode()
data = open(path, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
linktype = struct.unpack(end + "I", data[20:24])[0]
if linktype != 1:
    sys.exit(f"link type {linktype}, expected Ethernet")

streams = {}  # (src, sport, dst, dport) -> {seq: payload}
isn = {}  # the same key -> the first data seq, for streams seen from their SYN
other = []
off = 24
while off + 16 <= len(data):
    _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
        continue  # ARP, IPv6: no application data
    ihl = (pkt[14] & 15) * 4
    proto = pkt[23]
    src, dst = ".".join(map(str, pkt[26:30])), ".".join(map(str, pkt[30:34]))
    l4 = pkt[14 + ihl:14 + struct.unpack(">H", pkt[16:18])[0]]
    if proto == 17:
        sport, dport = struct.unpack(">HH", l4[:4])
        other.append(f"UDP {src}:{sport} > {dst}:{dport}")
        continue
    if proto != 6:
        continue
    sport, dport, seq = struct.unpack(">HHI", l4[:8])
    payload = l4[(l4[12] >> 4) * 4:]
    if l4[13] & 0x02:  # SYN
        isn[(src, sport, dst, dport)] = (seq + 1) & 0xFFFFFFFF
    if 15008 not in (sport, dport):
        other.append(f"TCP {src}:{sport} > {dst}:{dport}")
        continue
    if payload:
        streams.setdefault((src, sport, dst, dport), {})[seq] = payload

if other:
    sys.exit("traffic outside HBONE: " + "; ".join(sorted(set(other))[:5]))
if not streams:
    sys.exit("no TCP payload on port 15008")


def stream_bytes(segs, base):
    out = bytearray()
    for seq in sorted(segs):
        rel = (seq - base) & 0xFFFFFFFF
        p = segs[seq]
        if rel + len(p) > len(out):
            out[rel:rel + len(p)] = p
    return bytes(out)


def records(b):
    i = 0
    while i + 5 <= len(b):
        typ, ver, ln = b[i], struct.unpack(">H", b[i + 1:i + 3])[0], struct.unpack(">H", b[i + 3:i + 5])[0]
        yield typ, ver, b[i + 5:i + 5 + ln]
        i += 5 + ln


def hello_versions(body):
    """supported_versions offered (ClientHello) or chosen (ServerHello)."""
    kind = body[0]
    p = 4 + 2 + 32  # handshake header, legacy_version, random
    p += 1 + body[p]  # session id
    if kind == 1:
        p += 2 + struct.unpack(">H", body[p:p + 2])[0]  # cipher suites
        p += 1 + body[p]  # compression methods
    else:
        p += 2 + 1  # cipher suite, compression method
    ext_end = p + 2 + struct.unpack(">H", body[p:p + 2])[0]
    p += 2
    while p + 4 <= ext_end:
        et, el = struct.unpack(">HH", body[p:p + 4])
        ev = body[p + 4:p + 4 + el]
        if et == 0x002B:
            if kind == 1:
                return [struct.unpack(">H", ev[1 + k:3 + k])[0] for k in range(0, ev[0], 2)]
            return [struct.unpack(">H", ev[:2])[0]]
        p += 4 + el
    return []


client_hello = server_hello = False
app_out = app_in = 0
for (src, sport, dst, dport), segs in streams.items():
    key = (src, sport, dst, dport)
    if any(marker in p for p in segs.values()):
        sys.exit(f"the marker is in a packet {src}:{sport} > {dst}:{dport}")
    if key not in isn:
        continue  # a connection older than the capture: no record boundary known
    b = stream_bytes(segs, isn[key])
    if marker in b:
        sys.exit(f"the marker is in the stream {src}:{sport} > {dst}:{dport}")
    recs = list(records(b))
    if not recs or recs[0][0] != 0x16:
        sys.exit(f"{src}:{sport} > {dst}:{dport} does not start with a TLS handshake record")
    for typ, ver, body in recs:
        if typ not in (0x14, 0x15, 0x16, 0x17) or ver >> 8 != 3:
            sys.exit(f"{src}:{sport} > {dst}:{dport}: not TLS (record type {typ:#x}, version {ver:#x})")
    typ, ver, body = recs[0]
    if dport == 15008 and body[0] == 1:
        if 0x0304 not in hello_versions(body):
            sys.exit(f"ClientHello {src}:{sport} > {dst}:{dport} does not offer TLS 1.3")
        client_hello = True
    if sport == 15008 and body[0] == 2:
        if hello_versions(body) != [0x0304]:
            sys.exit(f"ServerHello {src}:{sport} > {dst}:{dport} did not choose TLS 1.3")
        server_hello = True
    n = sum(len(r[2]) for r in recs if r[0] == 0x17)
    if dport == 15008:
        app_out += n
    else:
        app_in += n

if not (client_hello and server_hello):
    sys.exit(f"no full TLS 1.3 handshake seen (ClientHello {client_hello}, ServerHello {server_hello})")
if app_out < len(marker) or app_in < len(marker):
    sys.exit(f"too little TLS application data: {app_out} bytes to 15008, {app_in} back")
print(f"ok: {len(streams)} TLS stream(s), {app_out} + {app_in} bytes of application data")
EOF
        fail "capture on $f's eth0: $(cat "$E2E_TMP/$f.check")"
    echo "$f: $(cat "$E2E_TMP/$f.check")"
done
echo "ok"
