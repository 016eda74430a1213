"""A stand-in for the model: a real HTTP server on 127.0.0.1 that speaks the chat-completions
protocol (POST /v1/chat/completions) and answers from a script.

Each script entry is one answer: a chat completion built with `reply()` / `call()` / `text()`,
an HTTP failure built with `status()`, or a function of the request body returning either. Every
request is recorded (parsed body and headers) so tests can count them and read what the model was
sent; GET /v1/models answers `models`. When the script runs out the server answers 500 "script
exhausted" (or repeats the last entry with ``repeat_last=True``).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ids = itertools.count(1)


@dataclass
class Status:
    code: int
    message: str = "error"
    headers: dict = field(default_factory=dict)


def status(code: int, message: str = "error", retry_after_ms: int | None = 1) -> Status:
    """An HTTP failure in OpenAI's error shape; retry-after-ms keeps client back-off short in tests."""
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    return Status(code, message, headers)


def call(name: str, arguments, call_id: str | None = None) -> dict:
    """One tool call; `arguments` is a dict (sent as JSON text) or raw text (sent as is)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"call_{next(_ids)}", "type": "function",
            "function": {"name": name, "arguments": args}}


def optimize(config) -> dict:
    """The final tool call: config as a dict (encoded) or raw text (malformed on purpose)."""
    text = config if isinstance(config, str) else json.dumps(config)
    return call("optimize_workload", {"config_json": text})


def reply(*tool_calls: dict, content: str | None = None, usage=(100, 20), model: str = "fake-model") -> dict:
    prompt, completion = usage
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def text(content: str, **kw) -> dict:
    return reply(content=content, **kw)


class FakeLLM:
    def __init__(self, script=(), repeat_last: bool = False, models=("fake-model",)):
        self.script = list(script)
        self.repeat_last = repeat_last
        self.models = list(models)
        self.gets: list[str] = []  # GET /v1/models lookups, kept apart from the counted completions
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._served = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def messages(self, i: int = -1) -> list[dict]:
        """The conversation the model was sent in request i."""
        return self.requests[i]["messages"]

    def tool_results(self, i: int = -1) -> list[str]:
        return [m["content"] for m in self.messages(i) if m.get("role") == "tool"]

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self):
        with self._lock:
            if self._served < len(self.script):
                answer = self.script[self._served]
            elif self.repeat_last and self.script:
                answer = self.script[-1]
            else:
                answer = Status(500, "script exhausted")
            self._served += 1
            return answer

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                with fake._lock:
                    fake.gets.append(self.path)
                if self.path.rstrip("/").endswith("/models") and fake.models:
                    return self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]})
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with fake._lock:
                    fake.paths.append(self.path)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.requests.append(json.loads(body or b"{}"))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                answer = fake._next()
                if callable(answer):  # decides from what the model was sent
                    answer = answer(fake.requests[-1])
                if isinstance(answer, Status):
                    return self._send(answer.code, {"error": {"message": answer.message, "type": "fake",
                                                              "code": str(answer.code)}}, answer.headers)
                self._send(200, answer)

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
