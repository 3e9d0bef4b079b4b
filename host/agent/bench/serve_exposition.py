# A local exposition target (and a 204 remote-write sink) for host/agent/bench/vmagent_cpu.sh.
import http.server, sys, threading
series = int(sys.argv[1]); port = int(sys.argv[2])
body = "".join('bench_metric_total{instance_id="%d",path="/api/v1/item/%d",code="%d"} %d\n' % (i % 100, i, 200 + i % 5, i * 3) for i in range(series)).encode()
hits = [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/hits"):
            b = str(hits[0]).encode()
        else:
            hits[0] += 1
            b = body
        self.send_response(200); self.send_header("Content-Type", "text/plain"); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); self.rfile.read(n)
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
