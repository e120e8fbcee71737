"""The chat-completions client against a raw-socket server on 127.0.0.1 that breaks HTTP itself:
a garbage status line, a body cut short of its Content-Length, an answer dripped one byte at a
time. Each is retried like an HTTP 500 and ends as the client's own error naming the URL."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from alignkit.core.chat_client import ChatClient, ChatServerError
from alignkit.plugins.feedback.judgement import FeedbackError
from alignkit.plugins.feedback.judges.openai import OpenAIJudge

ANSWER = json.dumps({"id": "x", "object": "chat.completion", "model": "fake",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "A"},
                                  "finish_reason": "stop"}]}).encode()
GOOD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(ANSWER)) + ANSWER


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


class RawServer:
    """Accepts connections; ``behaviours[i]`` (the last one repeats) decides connection i's answer."""

    def __init__(self, *behaviours: str) -> None:
        self.behaviours = behaviours
        self.connections = 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            behaviour = self.behaviours[min(self.connections, len(self.behaviours) - 1)]
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, behaviour), daemon=True).start()

    def _serve(self, conn: socket.socket, behaviour: str) -> None:
        try:
            _read_request(conn)
            if behaviour == "garbage":
                conn.sendall(b"garbage\r\n\r\n")
            elif behaviour == "short":  # promises 500 bytes, sends 20, closes
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                             + ANSWER[:20])
            elif behaviour == "drip":  # a whole answer, one byte every 0.1 s (about 25 s in all)
                for byte in GOOD:
                    if self.stop.is_set():
                        break
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)
            else:
                conn.sendall(GOOD)
        except OSError:
            pass  # the client hung up: what the drip case expects
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def _make(*behaviours: str) -> RawServer:
        servers.append(RawServer(*behaviours))
        return servers[-1]

    yield _make
    for server in servers:
        server.close()


def client(url: str, **kw) -> ChatClient:
    return ChatClient(base_url=url, model="fake", backoff=0.01, **{"timeout": 2.0, **kw})


BODY = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_garbage_status_line_is_retried_then_a_clear_error(raw_server):
    server = raw_server("garbage")
    with pytest.raises(ChatServerError, match=rf"server {server.url}/chat/completions failed after 3 attempt\(s\): "
                                              r"malformed HTTP answer \(BadStatusLine: 'garbage\\r\\n'\)"):
        client(server.url, retries=2).post(BODY)
    assert server.connections == 3


def test_a_body_shorter_than_its_content_length_is_retried_then_a_clear_error(raw_server):
    server = raw_server("short")
    with pytest.raises(ChatServerError, match=r"failed after 2 attempt\(s\): malformed HTTP answer "
                                              r"\(IncompleteRead\(20 bytes read, 480 more expected\)\)"):
        client(server.url, retries=1).post(BODY)
    assert server.connections == 2


def test_broken_answers_are_retried_like_a_500_and_the_call_recovers(raw_server):
    server = raw_server("garbage", "short", "good")
    got = client(server.url, retries=2).post(BODY)
    assert got["choices"][0]["message"]["content"] == "A"
    assert server.connections == 3


def test_a_dripping_server_cannot_hold_a_call_past_its_timeout(raw_server):
    # every byte comes within the socket timeout, so only an overall deadline ends an attempt:
    # 2 attempts x 1 s + 0.01 s backoff; before the fix this took the whole drip (~25 s per attempt)
    server = raw_server("drip")
    started = time.monotonic()
    with pytest.raises(ChatServerError, match=r"failed after 2 attempt\(s\): no answer within 1 s"):
        client(server.url, timeout=1.0, retries=1).post(BODY)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 3.5, elapsed
    assert server.connections == 2


def test_the_judge_reports_a_broken_server_as_its_own_error(raw_server):
    server = raw_server("garbage")
    judge = OpenAIJudge(base_url=server.url, model="fake", retries=1, backoff=0.01, timeout=2.0, concurrency=1)
    with pytest.raises(FeedbackError, match=rf"judge server {server.url}/chat/completions failed after 2 "
                                            r"attempt\(s\): malformed HTTP answer \(BadStatusLine: 'garbage\\r\\n'\)\. "
                                            r"Judgements answered before this are kept in the cache; rerun"):
        judge.choice_probs([[{"role": "user", "content": "A or B?"}]])
    assert server.connections == 2
