"""The real server's limits: idle connections cannot starve it, an oversized body is refused unread."""

from __future__ import annotations

import socket
import time

from alignkit.plugins.human.limits import MAX_BODY_BYTES
from alignkit.plugins.human.store import Store


def idle_sockets(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that never send a byte (what a slow or hostile client holds open)."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]


def test_120_idle_connections_do_not_stop_the_server(label_server, http):
    """waitress's default limit was 100 connections, idle ones kept for 120 s: /healthz then waited minutes."""
    store = Store(label_server.db)
    store.add_items("p", [{"prompt": "2+2?", "response_a": "4", "response_b": "5"}])
    token = store.add_annotator("alice")
    idle = idle_sockets(label_server.port, 120)
    try:
        started = time.perf_counter()
        assert http("GET", label_server.url + "/healthz", timeout=5)[0] == 200
        assert http("GET", label_server.url + "/api/next?project=p", token=token, timeout=5)[0] == 200
        assert time.perf_counter() - started < 5
    finally:
        for s in idle:
            s.close()


def test_idle_connections_over_the_limit_are_closed_after_the_channel_timeout(start_label_server, http):
    """With every slot held by idle sockets, waitress closes them after --channel-timeout and serves the next."""
    server = start_label_server("--connection-limit", "20", "--channel-timeout", "2")
    idle = idle_sockets(server.port, 30)  # the 20 slots, and 10 more queued in the listen backlog
    try:
        started = time.perf_counter()
        assert http("GET", server.url + "/healthz", timeout=15)[0] == 200
        waited = time.perf_counter() - started
        # about the timeout (2 s) plus a cleanup pass (1 s); without a timeout it would be never
        assert waited < 8, waited
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # the server hung up on the first idle connection
    finally:
        for s in idle:
            s.close()


def send_headers(port: int, content_length: int, sent: bytes, token: str | None = None) -> bytes:
    """POST /api/labels announcing ``content_length`` bytes but sending only ``sent``; the reply's first bytes."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((f"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                   f"{auth}Content-Length: {content_length}\r\n\r\n").encode() + sent)
        return s.recv(4096)  # socket.timeout if the server is waiting for the rest of the body


def test_an_oversized_body_is_refused_from_its_content_length_unread(label_server):
    """100 MB announced, 13 bytes sent: a prompt 413, not a server waiting for (and spooling) the 100 MB."""
    started = time.perf_counter()
    reply = send_headers(label_server.port, 100_000_000, b'{"item_id": 1')
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.perf_counter() - started < 5
    # the limit is exactly MAX_BODY_BYTES: one byte more is refused, the limit itself is read (then 401: no token)
    assert send_headers(label_server.port, MAX_BODY_BYTES + 1, b"{").startswith(b"HTTP/1.1 413")
    body = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 11) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    assert send_headers(label_server.port, len(body), body).startswith(b"HTTP/1.1 401")
