#!/usr/bin/python3
"""Test backends for the waypoint scenarios (tests/e2e/waypoint_traffic_test.sh).

  wp_app.py http NAME [fail]   HTTP/1.1 on 8080: "NAME\\n" for any path; /slow
                               answers after 3 s; with "fail" every answer is 503
  wp_app.py ws                 WebSocket echo on 8765
  wp_app.py grpc               gRPC echo.Echo/Unary and echo.Echo/Stream on 50051
  wp_app.py ws-client URL      sends three messages, prints the echoes
  wp_app.py grpc-client HOST:PORT
                               one unary call and one 20-message bidirectional stream
"""
import sys


def http(name, fail):
    import http.server
    import time

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            n = int(self.headers.get("content-length") or 0)
            if n:
                self.rfile.read(n)
            if self.path == "/slow":
                time.sleep(3)
            code = 503 if fail else 200
            body = (name + "\n").encode()
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()


def ws():
    import asyncio
    import websockets

    async def echo(sock, path=None):
        async for m in sock:
            await sock.send(m)

    async def main():
        async with websockets.serve(echo, "0.0.0.0", 8765):
            await asyncio.Future()

    asyncio.run(main())


def ws_client(url):
    import asyncio
    import websockets

    async def main():
        async with websockets.connect(url, open_timeout=5, close_timeout=2) as s:
            for m in ("one", "two", "three"):
                await s.send(m)
                print(await asyncio.wait_for(s.recv(), 5))

    asyncio.run(main())


def grpc_server():
    from concurrent import futures
    import grpc

    def unary(req, ctx):
        return b"echo:" + req

    def stream(it, ctx):
        for m in it:
            yield b"echo:" + m

    h = grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
    })
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    s.add_generic_rpc_handlers((h,))
    s.add_insecure_port("0.0.0.0:50051")
    s.start()
    s.wait_for_termination()


def grpc_client(target):
    import grpc

    with grpc.insecure_channel(target) as ch:
        print(ch.unary_unary("/echo.Echo/Unary")(b"hello", timeout=10).decode())
        msgs = [("m%d" % i).encode() for i in range(20)]
        got = [r.decode() for r in ch.stream_stream("/echo.Echo/Stream")(iter(msgs), timeout=10)]
        print("stream", len(got), got[0], got[-1])


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "http":
        http(sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "fail")
    elif cmd == "ws":
        ws()
    elif cmd == "ws-client":
        ws_client(sys.argv[2])
    elif cmd == "grpc":
        grpc_server()
    elif cmd == "grpc-client":
        grpc_client(sys.argv[2])
