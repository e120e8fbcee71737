"""Fixtures for the human-feedback tests: a real server process, a real PostgreSQL.

``label_server`` starts ``alignkit label serve`` on 127.0.0.1 on a free port against a
SQLite file and stops it afterwards. ``postgres_url`` starts a throwaway PostgreSQL
cluster from the installed binaries (``apt-get install postgresql``: /usr/lib/postgresql/*/bin)
once per session, and skips when they are absent.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from alignkit.plugins.human.store import Store


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method: str, url: str, body: Any = None, token: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or text)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = raw.decode("utf-8", "replace")
    return status, (json.loads(text) if "json" in ctype and text else text)


@dataclass
class Server:
    db: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    """Extra ``alignkit label serve`` options (``--trusted-proxy``, ``--channel-timeout``, ...)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alignkit.core.cli", "label", "serve", "--db", self.db,
             "--host", "127.0.0.1", "--port", str(self.port), "--threads", "8", *self.args],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env, cwd=self.log.parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label server exited: {self.log.read_text()}")
            try:
                if request("GET", self.url + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"label server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (what a crash or the OOM killer does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_label_server(tmp_path: Path):
    """``start_label_server(*serve_options)``: a running server on a fresh SQLite store, stopped afterwards."""
    servers: list[Server] = []

    def start(*args: str) -> Server:
        suffix = str(len(servers) or "")  # the first one keeps the plain names: labels.db, server.log
        server = Server(db=f"sqlite:///{tmp_path / f'labels{suffix}.db'}", port=free_port(),
                        log=tmp_path / f"server{suffix}.log", args=list(args))
        store = Store(server.db)  # create the schema before the server opens it
        store.close()
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def label_server(start_label_server):
    """A running label server on a fresh SQLite store; add items/annotators through ``Store(server.db)``."""
    return start_label_server()


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: drop to the 'postgres' user the Debian package creates."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def postgres_url():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install -y postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="alignkit-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                 "--no-sync", "-E", "UTF8"]), check=True, capture_output=True, env=env)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "-t", "60", "start"]), check=True, capture_output=True, env=env)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path):
    """The same store tests run on SQLite and on a real PostgreSQL server (a fresh database each)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'labels.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    import psycopg

    name = f"t_{os.getpid()}_{int(time.time() * 1e6) % 10**9}"
    with psycopg.connect(base, autocommit=True) as conn:  # a schema per test: cheaper than a database
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield f"{base}?options=-csearch_path%3D{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def pairs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
             "response_a": f"{2 * i}", "response_b": f"{2 * i + 1}"} for i in range(start, start + n)]


@pytest.fixture
def http():
    """``http(method, url, body=None, token=None, headers=None) -> (status, body)``."""
    return request


@pytest.fixture
def make_pairs():
    """``make_pairs(n, start=0)``: distinct arithmetic pairs in the chat format."""
    return pairs
