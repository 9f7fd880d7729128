"""A fault-injecting OpenAI-compatible stub server on 127.0.0.1 (stdlib only, for tests).

Every POST takes the next behaviour from `StubServer.script` (default "ok"):

* ``"ok"``: a valid answer; choice j's text is ``"stub seed=S j=J: "`` and ten fixed words.
* ``("429", retry_after)``: rate limited, with a ``Retry-After`` header (seconds).
* ``"500"``: an internal error.
* ``("hang", seconds)``: sleeps past the client's timeout, then answers.
* ``"malformed"``: status 200 with a body that is not JSON.
* ``"empty"``: status 200, valid JSON without choices.
* ``"drop"``: closes the connection without answering.

With ``reject_n=True`` a request with ``n`` above `max_n` (1 unless set) gets a 400.
Every request is recorded (path, body, headers) in `StubServer.requests`.
"""

from __future__ import annotations

import http.server
import json
import threading
import time


class StubServer:
    def __init__(self, *, reject_n: bool = False):
        self.script: list = []
        self.requests: list[dict] = []
        #: the largest n answered (above it: a 400, as llama.cpp answers above its slots)
        self.max_n = 1 if reject_n else 1_000_000
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                    action = stub.script.pop(0) if stub.script else "ok"
                stub._answer(self, action, body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _send(h, status: int, payload: bytes, headers: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            h.close_connection = True

    def _answer(self, h, action, body: dict) -> None:
        kind = action if isinstance(action, str) else action[0]
        if kind == "429":
            err = json.dumps({"error": {"message": "rate limited"}}).encode()
            return self._send(h, 429, err, {"Retry-After": str(action[1])})
        if kind == "500":
            return self._send(h, 500, json.dumps({"error": {"message": "boom"}}).encode())
        if kind == "malformed":
            return self._send(h, 200, b"{this is not json")
        if kind == "empty":
            return self._send(h, 200, json.dumps({"object": "text_completion"}).encode())
        if kind == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if kind == "hang":
            time.sleep(action[1])
        n = int(body.get("n") or 1)
        if n > self.max_n:
            err = {"error": {"message": "only n = 1 is supported", "type": "invalid_request"}}
            return self._send(h, 400, json.dumps(err).encode())
        chat = h.path.endswith("/chat/completions")
        choices = []
        for j in range(n):
            text = (
                f"stub seed={body.get('seed')} j={j}: this film had a plot and a cast worth seeing"
            )
            if chat:
                msg = {"role": "assistant", "content": text}
                choices.append({"index": j, "message": msg, "finish_reason": "stop"})
            else:
                choices.append({"index": j, "text": text, "finish_reason": "stop"})
        usage = {"prompt_tokens": 7, "completion_tokens": 5 * n, "total_tokens": 7 + 5 * n}
        out = {
            "object": "chat.completion" if chat else "text_completion",
            "model": body.get("model"),
        }
        out.update(choices=choices, usage=usage)
        return self._send(h, 200, json.dumps(out).encode())
