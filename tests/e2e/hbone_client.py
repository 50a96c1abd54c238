#!/usr/bin/python3
"""A minimal HBONE client built on python3-h2 (not veil's code): interop test.

Opens TLS 1.3 (ALPN h2, client certificate) to a pod's port 15008, sends
one HTTP/2 CONNECT (or a deliberately bad request) and, when the tunnel
opens, an HTTP/1.1 GET through it as DATA frames; prints what happened as
`key: value` lines for the shell test to check:

    tls: ok <server SPIFFE ID>     or   tls: refused <reason>
    status: 200                         (the CONNECT's answer)
    reset: <error code name>            (RST_STREAM instead of an answer)
    http: HTTP/1.0 200 OK               (first line of the tunnelled reply)
    closed: <reason>                    (connection closed by the server)

Exit status 0 when the run went as far as asked (--expect), else 1.
Run with /usr/bin/python3 (Debian's python3-h2).
"""

import argparse
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True, help="the pod's IP address")
    p.add_argument("--port", type=int, default=15008)
    p.add_argument("--authority", help="CONNECT :authority (default ADDR:8080)")
    p.add_argument("--cert", help="client certificate chain (PEM)")
    p.add_argument("--key", help="client private key (PEM)")
    p.add_argument("--ca", required=True, help="trust bundle (PEM)")
    p.add_argument("--expect-id", help="the server's SPIFFE ID (URI SAN) to require")
    p.add_argument("--path", default="/", help="path of the tunnelled GET")
    p.add_argument(
        "--request",
        choices=["connect", "get", "no-authority", "connect-with-path"],
        default="connect",
        help="what to send on the stream: a proper CONNECT, a GET, a CONNECT "
        "without :authority, or a CONNECT with :scheme and :path",
    )
    p.add_argument(
        "--garbage",
        choices=["tcp", "tls"],
        help="instead of HBONE: garbage in place of the TLS ClientHello (tcp) "
        "or in place of the HTTP/2 preface after the handshake (tls)",
    )
    p.add_argument(
        "--expect",
        choices=["tunnel", "status", "refused", "closed"],
        default="tunnel",
        help="tunnel: 200 and the app's 200; status: any answer or reset; "
        "refused: TLS refused; closed: the server closed the connection",
    )
    p.add_argument("--timeout", type=float, default=5.0)
    return p.parse_args()


def out(key, value):
    print(f"{key}: {value}", flush=True)


def tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    ctx.check_hostname = False  # SPIFFE certificates carry URI SANs only
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def spiffe_id(peercert):
    uris = [v for k, v in peercert.get("subjectAltName", ()) if k == "URI"]
    return uris[0] if len(uris) == 1 else None


def request_headers(args, authority):
    if args.request == "connect":
        return [(":method", "CONNECT"), (":authority", authority)]
    if args.request == "get":
        return [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", authority)]
    if args.request == "no-authority":
        return [(":method", "CONNECT")]
    return [(":method", "CONNECT"), (":scheme", "https"), (":path", "/"), (":authority", authority)]


def recv(sock, deadline):
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    return sock.recv(65536)


def run_garbage(args, ctx):
    raw = socket.create_connection((args.addr, args.port), timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    if args.garbage == "tcp":
        sock = raw
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
    else:
        sock = ctx.wrap_socket(raw)
        out("tls", "ok " + str(spiffe_id(sock.getpeercert())))
        sock.sendall(b"this is not the HTTP/2 connection preface\r\n\r\n" * 4)
    try:
        while True:
            data = recv(sock, deadline)
            if not data:
                out("closed", "eof")
                return 0
    except socket.timeout:
        out("open", "still open after %.1f s" % args.timeout)
        return 1
    except (ssl.SSLError, OSError) as e:
        out("closed", type(e).__name__ + " " + str(e))
        return 0
    finally:
        sock.close()


def run_hbone(args, ctx):
    authority = args.authority or f"{args.addr}:8080"
    raw = socket.create_connection((args.addr, args.port), timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    try:
        sock = ctx.wrap_socket(raw)
    except (ssl.SSLError, OSError) as e:
        out("tls", f"refused {type(e).__name__} {e}")
        return 0 if args.expect == "refused" else 1
    if sock.selected_alpn_protocol() != "h2":
        out("tls", f"refused: ALPN {sock.selected_alpn_protocol()!r}")
        return 1
    peer = spiffe_id(sock.getpeercert())
    if args.expect_id and peer != args.expect_id:
        out("tls", f"wrong server identity {peer} (expected {args.expect_id})")
        return 1

    # No header validation: the bad requests are the point of some runs.
    cfg = h2.config.H2Configuration(
        client_side=True,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(args, authority), end_stream=False)
    try:
        sock.sendall(conn.data_to_send())
    except (ssl.SSLError, OSError) as e:
        out("tls", f"refused {type(e).__name__} {e}")
        return 0 if args.expect == "refused" else 1

    # In TLS 1.3 the server judges the client certificate after the client
    # has finished its handshake: a refusal shows as an alert or EOF before
    # the server's first HTTP/2 frame.
    got_frame = False
    status = None
    body = b""
    try:
        while time.monotonic() < deadline:
            data = recv(sock, deadline)
            if not data:
                if not got_frame:
                    out("tls", "refused: closed before the server's SETTINGS")
                    return 0 if args.expect == "refused" else 1
                out("closed", "eof")
                break
            if not got_frame:
                out("tls", f"ok {peer}")
                got_frame = True
            done = False
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = dict(ev.headers).get(":status")
                    out("status", status)
                    if status != "200" or args.expect == "status":
                        done = True
                    elif args.request == "connect":
                        get = (
                            f"GET {args.path} HTTP/1.1\r\nHost: {authority}\r\n"
                            "User-Agent: hbone-interop\r\nConnection: close\r\n\r\n"
                        )
                        conn.send_data(sid, get.encode(), end_stream=True)
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    out("reset", h2.errors.ErrorCodes(ev.error_code).name)
                    done = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    out("closed", f"GOAWAY {ev.error_code!r}")
                    done = True
            sock.sendall(conn.data_to_send())
            if done:
                break
    except socket.timeout:
        out("timeout", "no answer within %.1f s" % args.timeout)
    except (ssl.SSLError, OSError) as e:
        if not got_frame:
            out("tls", f"refused {type(e).__name__} {e}")
            return 0 if args.expect == "refused" else 1
        out("closed", f"{type(e).__name__} {e}")
    finally:
        sock.close()

    if body:
        out("http", body.split(b"\r\n", 1)[0].decode(errors="replace"))
    if args.expect == "tunnel":
        return 0 if status == "200" and body.startswith(b"HTTP/1.") and b" 200 " in body[:20] else 1
    if args.expect == "status":
        return 0 if got_frame else 1
    return 1  # expected a refusal, got an HTTP/2 session


def main():
    args = parse_args()
    ctx = tls_context(args)
    if args.garbage:
        return run_garbage(args, ctx)
    return run_hbone(args, ctx)


if __name__ == "__main__":
    sys.exit(main())
