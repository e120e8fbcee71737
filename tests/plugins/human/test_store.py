"""The label store, on SQLite and on a real PostgreSQL server, with the same code."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from alignkit.plugins.human.store import Store, StoreError, hash_token


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def test_sqlite_runs_in_wal_mode_with_durable_commits(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    s.close()


def test_pushing_pairs_is_idempotent(store, make_pairs):
    ids = store.add_items("p", make_pairs(5), overlap=2)
    assert len(set(ids)) == 5
    again = store.add_items("p", make_pairs(7))  # 5 old + 2 new; overlap kept
    assert again[:5] == ids and len(set(again)) == 7
    assert len(store.items("p")) == 7
    assert store.project("p").overlap == 2
    # the same pair twice in one push is one item
    dup = store.add_items("q", make_pairs(1) * 3)
    assert len(set(dup)) == 1


def test_tokens_are_stored_hashed_and_authenticate(store):
    token = store.add_annotator("alice")
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM annotators WHERE name = 'alice'")).scalar()
    assert stored == hash_token(token) and token not in stored
    assert store.authenticate(token).name == "alice"
    assert store.authenticate("wrong") is None and store.authenticate(None) is None
    with pytest.raises(StoreError, match="already exists"):
        store.add_annotator("alice")
    new = store.rotate_token("alice")
    assert store.authenticate(token) is None and store.authenticate(new).name == "alice"


def test_sessions_are_stored_hashed_and_end_on_the_server(store):
    alice = store.authenticate(store.add_annotator("alice"))
    first, second = store.start_session(alice.id), store.start_session(alice.id)
    assert first != second
    with store.engine.connect() as conn:
        stored = set(conn.execute(text("SELECT id_hash FROM login_sessions")).scalars())
    assert stored == {hash_token(first), hash_token(second)}
    assert store.session_annotator(first).name == "alice" and store.session_annotator("nope") is None
    store.end_session(first)  # sign-out ends this session only
    assert store.session_annotator(first) is None and store.session_annotator(second).name == "alice"
    expired = store.start_session(alice.id, ttl=timedelta(seconds=-1))
    assert store.session_annotator(expired) is None
    store.rotate_token("alice")  # a new token signs out every browser of the old one
    assert store.session_annotator(second) is None


def test_a_new_table_appears_in_an_existing_database(tmp_path):
    """A label database made before sessions existed gets login_sessions on the next start."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    token = old.add_annotator("alice")
    with old.engine.begin() as conn:
        conn.execute(text("DROP TABLE login_sessions"))
    old.close()
    new = Store(url)
    assert new.session_annotator(new.start_session(new.authenticate(token).id)).name == "alice"
    new.close()


def test_overlap_assigns_each_item_to_k_annotators(store, make_pairs):
    store.add_items("p", make_pairs(3), overlap=2)
    people = [store.authenticate(store.add_annotator(n)) for n in ("a1", "a2", "a3")]
    rng = random.Random(0)
    first = [store.next_item("p", a.id, rng=rng)[0].id for a in people]
    # two annotators share the oldest item; the third is sent to the next one
    assert first[0] == first[1] != first[2]
    # a reload shows the same item with the same sides
    item, assignment = store.next_item("p", people[0].id)
    again = store.next_item("p", people[0].id)
    assert again[0].id == item.id and again[1].swapped == assignment.swapped


def test_submit_is_idempotent_and_per_annotator(store, make_pairs):
    (item_id,) = store.add_items("p", make_pairs(1))
    alice = store.authenticate(store.add_annotator("alice"))
    bob = store.authenticate(store.add_annotator("bob"))
    store.next_item("p", alice.id)
    status, label_id = store.submit(item_id, alice.id, "a", principles=["helpful"], comment="ok")
    assert status == "stored"
    assert store.submit(item_id, alice.id, "a", principles=["helpful"], comment="ok") == ("unchanged", label_id)
    assert store.submit(item_id, alice.id, "b", principles=["helpful"], comment="ok") == ("updated", label_id)
    assert store.submit(item_id, bob.id, "tie")[0] == "stored"
    labels = {(r.annotator, r.choice) for r in store.labels("p")}
    assert labels == {("alice", "b"), ("bob", "tie")}
    with pytest.raises(StoreError, match="choice"):
        store.submit(item_id, alice.id, "left")
    with pytest.raises(StoreError, match="no item"):
        store.submit(10**6, alice.id, "a")
    progress = store.progress("p")
    assert progress["items"] == 1 and progress["complete"] == 1
    assert progress["annotators"]["alice"]["labels"] == 1
    assert progress["annotators"]["alice"]["mean_seconds"] is not None  # time from being shown


def test_concurrent_submissions_store_each_label_once(store, make_pairs):
    ids = store.add_items("p", make_pairs(10), overlap=8)
    people = [store.authenticate(store.add_annotator(f"n{i}")).id for i in range(8)]
    errors: list[BaseException] = []

    def work(annotator: int) -> None:
        try:
            for item_id in ids:
                store.submit(item_id, annotator, "a")
                store.submit(item_id, annotator, "a")  # a re-submit races the others too
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.labels("p")
    assert len(rows) == 8 * 10
    assert len({(r.item_id, r.annotator) for r in rows}) == 8 * 10
    assert store.progress("p")["complete"] == 10
