"""A real OpenAI-compatible HTTP server (POST /v1/chat/completions) with fixed usage.

Answers every chat completion with `content` and a `usage` of `prompt_tokens`
and `completion_tokens` as configured, and records the requests, so tests can
check what the client sent and what the runtime counted. A request with
`"stream": true` gets the same answer as Server-Sent Events, one word of
`content` per chunk, then (with `stream_options.include_usage`) the usage
chunk and `data: [DONE]`, as OpenAI streams.

Standard library only, so it also runs as a pod of a test cluster from any image with
Python (the file mounted from a ConfigMap): `python openai_server.py --host 0.0.0.0 --port 8080
[--prompt-tokens N] [--completion-tokens N] [--content TEXT]`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeLLM:
    url: str
    prompt_tokens: int
    completion_tokens: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_openai_server(
    prompt_tokens: int = 120,
    completion_tokens: int = 30,
    content: str = "hello from the model",
    host: str = "127.0.0.1",
    port: int = 0,
) -> FakeLLM:
    llm = FakeLLM(url="", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            llm.requests.append(body)
            llm.headers.append({k.lower(): v for k, v in self.headers.items()})
            if body.get("stream"):
                self.stream(body)
                return
            answer = json.dumps(
                {
                    "id": f"chatcmpl-{len(llm.requests)}",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": llm.prompt_tokens,
                        "completion_tokens": llm.completion_tokens,
                        "total_tokens": llm.prompt_tokens + llm.completion_tokens,
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def stream(self, body: dict[str, Any]) -> None:
            words = content.split(" ")
            chunks: list[dict[str, Any]] = [
                {"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]}
                for i, w in enumerate(words)
            ]
            chunks[-1]["choices"][0]["finish_reason"] = "stop"
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": llm.prompt_tokens,
                    "completion_tokens": llm.completion_tokens,
                    "total_tokens": llm.prompt_tokens + llm.completion_tokens,
                }
                chunks.append({"choices": [], "usage": usage})
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()  # no length: the stream ends when the connection closes
            for chunk in chunks:
                chunk.update(id=f"chatcmpl-{len(llm.requests)}", object="chat.completion.chunk")
                chunk["model"] = body["model"]
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    llm.url = f"http://{host}:{server.server_address[1]}/v1"
    llm._server = server
    return llm


def main() -> None:
    """Serve until killed (a pod in a test cluster)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--prompt-tokens", type=int, default=120)
    parser.add_argument("--completion-tokens", type=int, default=30)
    parser.add_argument("--content", default="hello from the model")
    args = parser.parse_args()
    llm = start_openai_server(
        args.prompt_tokens, args.completion_tokens, args.content, args.host, args.port
    )
    print(f"serving the OpenAI chat-completions protocol at {llm.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
