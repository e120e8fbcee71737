"""The real server under load and under SIGKILL: every acknowledged label is stored exactly once.

Set ALIGNKIT_LOAD_REPORT=<file> to write the measured latency percentiles as JSON (the
numbers in docs/human_feedback.md come from there).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time

import pytest

from alignkit.plugins.human.store import Store, side_to_choice

ANNOTATORS = 20
LABELS_EACH = 50
SIDES = ("left", "right", "tie", "skip")


class Client:
    """One annotator's keep-alive connection to the API."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float]:
        headers = {"Authorization": f"Bearer {self.token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        self.conn.request(method, path, body=payload, headers=headers)
        resp = self.conn.getresponse()
        data = json.loads(resp.read() or b"{}")
        return resp.status, data, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@pytest.mark.slow  # load test: 20 annotator threads
def test_twenty_concurrent_annotators(label_server, make_pairs):
    store = Store(label_server.db)
    store.add_items("load", make_pairs(LABELS_EACH), overlap=ANNOTATORS)
    tokens = {f"annotator{i:02d}": store.add_annotator(f"annotator{i:02d}") for i in range(ANNOTATORS)}
    acked: dict[tuple[str, int], str] = {}
    latencies = {"next": [], "label": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    health: list[float] = []

    def annotate(name: str, token: str) -> None:
        client = Client(label_server.port, token)
        try:
            for n in range(LABELS_EACH + 1):
                status, item, t_next = client.call("GET", "/api/next?project=load")
                if status != 200:
                    errors.append(f"{name}: next -> {status} {item}")
                    return
                if item["item_id"] is None:
                    if n != LABELS_EACH:
                        errors.append(f"{name}: ran out after {n} labels")
                    return
                side = SIDES[(item["item_id"] + len(name) + n) % 4]
                status, body, t_label = client.call("POST", "/api/labels", {"item_id": item["item_id"], "choice": side})
                if status not in (200, 201):
                    errors.append(f"{name}: label -> {status} {body}")
                    return
                if n % 10 == 0:  # a resent request is acknowledged again and stored once
                    status2, body2, _ = client.call("POST", "/api/labels", {"item_id": item["item_id"], "choice": side})
                    if (status2, body2.get("status"), body2.get("label_id")) != (200, "unchanged", body["label_id"]):
                        errors.append(f"{name}: re-submit -> {status2} {body2}")
                with lock:
                    acked[(name, item["item_id"])] = side
                    latencies["next"].append(t_next)
                    latencies["label"].append(t_label)
            errors.append(f"{name}: still had items after {LABELS_EACH} labels")
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(f"{name}: {exc!r}")

    def probe() -> None:  # is the server still answering someone who is not in the crowd?
        while not stop.is_set():
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", label_server.port, timeout=60)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            health.append(time.perf_counter() - started)
            time.sleep(0.25)

    prober = threading.Thread(target=probe)
    prober.start()
    threads = [threading.Thread(target=annotate, args=item) for item in tokens.items()]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    stop.set()
    prober.join()
    assert not errors, errors[:5]
    assert len(acked) == ANNOTATORS * LABELS_EACH

    # every acknowledged label is in the database exactly once, with the side mapped correctly
    ids = {a.name: a.id for a in store.annotators()}
    rows = store.labels("load")
    assert len(rows) == ANNOTATORS * LABELS_EACH
    assert len({(r.annotator, r.item_id) for r in rows}) == len(rows)
    for row in rows:
        side = acked[(row.annotator, row.item_id)]
        assert row.choice == side_to_choice(side, store.assignment(row.item_id, ids[row.annotator]).swapped)
    assert store.progress("load")["complete"] == LABELS_EACH - sum(  # items where everyone skipped are not complete
        1 for item_id in {r.item_id for r in rows} if all(r.choice == "skip" for r in rows if r.item_id == item_id))

    report = {
        "annotators": ANNOTATORS, "labels": len(rows), "wall_seconds": round(wall, 2),
        "labels_per_second": round(len(rows) / wall, 1),
        **{f"{kind}_ms_p{q}": round(1000 * percentile(values, q), 1)
           for kind, values in latencies.items() for q in (50, 95, 99)},
        "healthz_ms_max": round(1000 * max(health), 1) if health else None,
        "healthz_ms_median": round(1000 * statistics.median(health), 1) if health else None,
    }
    print("load test:", json.dumps(report))
    if os.environ.get("ALIGNKIT_LOAD_REPORT"):
        with open(os.environ["ALIGNKIT_LOAD_REPORT"], "w") as fh:
            json.dump(report, fh, indent=2)
    # responsive: generous bounds, this runs on shared CI machines
    assert report["label_ms_p99"] < 10_000 and (report["healthz_ms_max"] or 0) < 10_000


@pytest.mark.slow  # kills and restarts the label server (over 3 s)
def test_sigkill_loses_no_acknowledged_label(label_server, make_pairs):
    store = Store(label_server.db)
    store.add_items("crash", make_pairs(400), overlap=1)
    tokens = [store.add_annotator(f"k{i}") for i in range(4)]
    acked: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def annotate(token: str) -> None:
        client = Client(label_server.port, token)
        try:
            for n in range(100):
                status, item, _ = client.call("GET", "/api/next?project=crash")
                side = SIDES[n % 3]
                status, body, _ = client.call("POST", "/api/labels", {"item_id": item["item_id"], "choice": side})
                if status in (200, 201):
                    with lock:
                        acked.append((token, item["item_id"], side))
        except (OSError, http.client.HTTPException, ValueError):
            return  # the server died under us: whatever was not acknowledged may be lost

    threads = [threading.Thread(target=annotate, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while len(acked) < 40 and time.time() < deadline:
        time.sleep(0.01)
    label_server.kill()  # SIGKILL mid-run: requests are in flight
    for t in threads:
        t.join()
    assert len(acked) >= 40
    assert len(acked) < 400, "the server was killed after the run finished: nothing was in flight"

    after = Store(label_server.db)  # a fresh process view of the file, after the crash
    names = {a.id: a.name for a in after.annotators()}
    by_token = {t: after.authenticate(t) for t in tokens}
    stored = {(r.annotator, r.item_id): r.choice for r in after.labels("crash")}
    for token, item_id, side in acked:
        annotator = by_token[token]
        swapped = after.assignment(item_id, annotator.id).swapped
        assert stored.get((names[annotator.id], item_id)) == side_to_choice(side, swapped)
    # the database opens cleanly and the server carries on
    label_server.start()
    client = Client(label_server.port, tokens[0])
    status, item, _ = client.call("GET", "/api/next?project=crash")
    assert status == 200 and item["item_id"] is not None
    assert client.call("POST", "/api/labels", {"item_id": item["item_id"], "choice": "left"})[0] == 201
