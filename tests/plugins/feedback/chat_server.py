"""A real OpenAI-compatible chat-completions server for the HTTP judge tests (stdlib only).

Run as a process: ``python chat_server.py`` prints the port it listens on (127.0.0.1) and
serves until killed. The first path segment picks a behaviour:

  /short/v1/...        prefers the shorter reply: P = 0.8, returned as top_logprobs
  /text/v1/...         the same verdict as a sentence, without logprobs
  /biased/v1/...       always answers A (P = 0.9): a judge with pure position bias
  /slow/v1/...         answers after 3 s (for timeouts)
  /garbage/v1/...      HTTP 200 with an HTML body
  /flaky/v1/...        the first 4 requests answer like /short, then HTTP 200 garbage
  /tiny/v1/...         a tiny random transformers model: real next-token top_logprobs and generation
  GET /stats           requests seen per behaviour (JSON)
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS: dict[str, int] = {}
LOCK = threading.Lock()
_TINY: dict = {}
TINY_LOCK = threading.Lock()  # one import and one forward at a time (lazy imports are not thread-safe)


def _pair(messages):
    text = messages[-1]["content"]
    match = re.search(r"\(A\) (.*?)\n\n\(B\) (.*?)\n\nQuestion:", text, re.DOTALL)
    return (match.group(1), match.group(2)) if match else (None, None)


def _completion(content, top=None):
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                           "top_logprobs": top}]}
    return {"id": "x", "object": "chat.completion", "model": "test", "choices": [choice]}


def _short(body, logprobs=True):
    if body.get("max_tokens", 16) > 1:
        return _completion(f"Revised: {body['messages'][-1]['content'][:40]}")
    a, b = _pair(body["messages"])
    p_a = 0.5 if a is None or len(a) == len(b) else (0.8 if len(a) < len(b) else 0.2)
    if not logprobs:
        return _completion(f"The better reply is {'A' if p_a >= 0.5 else 'B'}.")
    top = sorted([{"token": "A", "logprob": math.log(p_a)}, {"token": "B", "logprob": math.log(1 - p_a)}],
                 key=lambda t: -t["logprob"])
    return _completion(top[0]["token"], top)


def _tiny(body):
    import torch

    if not _TINY:
        from alignkit.core.registry import Registry
        from alignkit.core.types import ModelSpec

        loaded = Registry().load_model(ModelSpec("tiny-random"), "judge")
        _TINY.update(model=loaded.model.eval(), tokenizer=loaded.tokenizer)
    model, tok = _TINY["model"], _TINY["tokenizer"]
    text = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -512:]
    with torch.no_grad():
        if body.get("max_tokens", 16) > 1:
            out = model.generate(ids, max_new_tokens=int(body["max_tokens"]), do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            return _completion(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip() or "(empty)")
        logps = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
    top = []
    for token in ("A", "B"):  # the judge's letters, plus the model's own most likely tokens
        idx = tok(token, add_special_tokens=False)["input_ids"][0]
        top.append({"token": token, "logprob": float(logps[idx])})
    values, indices = logps.topk(18)
    top += [{"token": tok.decode([int(i)]), "logprob": float(v)} for v, i in zip(values, indices)]
    return _completion(max(top, key=lambda t: t["logprob"])["token"], top)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                self._send(200, dict(COUNTS))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        mode = self.path.strip("/").split("/")[0]
        with LOCK:
            COUNTS[mode] = COUNTS.get(mode, 0) + 1
            seen = COUNTS[mode]
        if not self.path.endswith("/v1/chat/completions"):
            return self._send(404, {"error": "not found"})
        if mode == "short":
            return self._send(200, _short(body))
        if mode == "text":
            return self._send(200, _short(body, logprobs=False))
        if mode == "biased":
            return self._send(200, _completion("A", [{"token": "A", "logprob": math.log(0.9)},
                                                     {"token": "B", "logprob": math.log(0.1)}]))
        if mode == "slow":
            time.sleep(3)
            return self._send(200, _short(body))
        if mode == "garbage" or (mode == "flaky" and seen > 4):
            return self._send(200, b"<html><body>502 upstream hiccup</body></html>", "text/html")
        if mode == "flaky":
            return self._send(200, _short(body))
        if mode == "tiny":
            with TINY_LOCK:
                answer = _tiny(body)
            return self._send(200, answer)
        return self._send(404, {"error": f"unknown mode {mode}"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
