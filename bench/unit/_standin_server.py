"""A stand-in for ``vllm serve`` in the server lifecycle tests: a real HTTP server on the given port that
answers /health, and on POST /v1/chat/completions does what ``MODE`` says. It starts a child process of
its own, so stopping the whole process group is tested too. Run: python _standin_server.py PORT MODE

MODE: ``ok`` (stream a two-token answer), ``hang`` (accept the request, never answer), ``die`` (exit with
code 3 on the first request), ``exit`` (exit with code 7 before listening), ``mute`` (never listen).
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "exit":
    print("stand-in: failing at start-up", flush=True)
    sys.exit(7)
# a grandchild in the same process group, as vLLM's engine core is
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
print(f"stand-in: child {child.pid}", flush=True)
if mode == "mute":
    threading.Event().wait()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if mode == "die":
            os._exit(3)
        if mode == "hang":
            threading.Event().wait()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for tid, text in ((42, "Nor"), (43, "mal")):
            step = {"token": f"token_id:{tid}", "logprob": -0.1,
                    "top_logprobs": [{"token": f"token_id:{tid}", "logprob": -0.1},
                                     {"token": "token_id:7", "logprob": -2.5}]}
            event = {"choices": [{"delta": {"content": text}, "logprobs": {"content": [step]}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
