"""Bad label bodies get a 400 that names the field, never a 500 and never a wrong label."""

from __future__ import annotations

import json
import time

import pytest

from alignkit.plugins.human.app import create_app
from alignkit.plugins.human.jsonbody import BadBody, nesting_depth, parse_object
from alignkit.plugins.human.store import MAX_ITEM_ID, Store, StoreError, check_item_id


def test_nesting_depth_by_hand():
    assert nesting_depth("1") == 0 and nesting_depth('"[{"') == 0  # brackets in a string do not count
    assert nesting_depth("[]") == 1 and nesting_depth("[[], [[]]]") == 3  # outer 1, [[]] 2 and 3
    assert nesting_depth('{"a": [1, {"b": "]]]"}]}') == 3  # object 1, list 2, object 3
    assert nesting_depth(r'["\"[[", []]') == 2  # an escaped quote does not end the string
    assert nesting_depth("[" * 100_000, stop_after=20) == 21  # stops counting past the limit


def test_parse_object_refuses_what_json_loads_would_crash_on_or_accept():
    started = time.perf_counter()
    with pytest.raises(BadBody, match="deeper than 20 levels"):
        parse_object(b"[" * 100_000 + b"]" * 100_000)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(RecursionError):  # what the bare parser does with it (hence the check)
        json.loads("[" * 100_000 + "]" * 100_000)
    assert parse_object(b'{"a": ' + b"[" * 19 + b"]" * 19 + b"}") == {"a": [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}
    for raw, message in ((b'{"x": NaN}', "NaN is not a JSON number"), (b"[1]", "send a JSON object, not a list"),
                         (b'{"x": 1', "not valid JSON"), (b"\xff", "not UTF-8"),
                         (b'{"x": ' + b"9" * 5000 + b"}", "not valid JSON")):
        with pytest.raises(BadBody, match=message):
            parse_object(raw)


def test_item_ids_are_strict_ints_in_range():
    assert check_item_id(1) == 1 and check_item_id(MAX_ITEM_ID) == 2**31 - 1
    for bad in (True, False, 0, -1, MAX_ITEM_ID + 1, 2**63, 1.0, "1", None):
        with pytest.raises(StoreError, match="item_id must be an integer from 1 to 2147483647"):
            check_item_id(bad)


@pytest.fixture
def api(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'labels.db'}")
    store.add_items("proj", [{"prompt": "2+2?", "response_a": "4", "response_b": "5"}])
    token = store.add_annotator("alice")
    client = create_app(store).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/next?project=proj", headers=headers).get_json()["item_id"] == 1  # shown item 1
    yield store, client, headers
    store.close()


@pytest.mark.parametrize("body, field", [
    ({"item_id": True, "choice": "left"}, "item_id"),  # used to be stored as a label for item 1
    ({"item_id": 2**63, "choice": "left"}, "item_id"),  # used to be a 500 (SQLite int64 overflow)
    ({"item_id": 2**31, "choice": "left"}, "item_id"),  # past PostgreSQL's INTEGER
    ({"item_id": 0, "choice": "left"}, "item_id"),
    ({"item_id": 1.0, "choice": "left"}, "item_id"),
    ({"item_id": "1", "choice": "left"}, "item_id"),
    ({"choice": "left"}, "item_id"),
    ({"item_id": 1, "choice": 1}, "choice"),
    ({"item_id": 1}, "choice"),
    ({"item_id": 1, "choice": "left", "principles": "honest"}, "principles"),
    ({"item_id": 1, "choice": "left", "principles": [1]}, "principles"),
    ({"item_id": 1, "choice": "left", "comment": 5}, "comment"),
    ({"item_id": 1, "choice": "left", "annotator": ["alice"]}, "annotator"),
])
def test_a_wrong_field_is_a_400_naming_it(api, body, field):
    store, client, headers = api
    resp = client.post("/api/labels", headers=headers, json=body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"].startswith(field)
    assert store.labels("proj") == []


def test_deep_or_broken_json_is_a_400(api):
    store, client, headers = api
    started = time.perf_counter()
    resp = client.post("/api/labels", headers=headers, data=b"[" * 100_000 + b"]" * 100_000,
                       content_type="application/json")
    assert resp.status_code == 400 and "deeper than 20 levels" in resp.get_json()["error"]
    assert time.perf_counter() - started < 2.0
    resp = client.post("/api/labels", headers=headers, data=b'{"item_id": 1, "choice": "left"',
                       content_type="application/json")
    assert resp.status_code == 400 and "not valid JSON" in resp.get_json()["error"]
    resp = client.post("/api/labels", headers=headers, data=b'{"item_id": 1, "choice": "left"}')
    assert resp.status_code == 400 and "Content-Type: application/json" in resp.get_json()["error"]
    assert store.labels("proj") == []
    ok = client.post("/api/labels", headers=headers, json={"item_id": 1, "choice": "left", "principles": None,
                                                           "comment": None})
    assert ok.status_code == 201 and len(store.labels("proj")) == 1


@pytest.mark.parametrize("raw", ["9223372036854775808", "99999999999", "2147483648", "0", " 1", "1_0", "١", "-1", ""])
def test_a_form_item_id_is_ascii_digits_in_range(api, raw):
    store, client, headers = api
    token = headers["Authorization"].split()[1]
    assert client.post("/login", data={"token": token}).status_code == 303
    html = client.get("/p/proj").get_data(as_text=True)
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    resp = client.post("/p/proj/label", data={"item_id": raw, "choice": "left", "csrf": csrf})
    assert resp.status_code == 400 and "item_id must be" in resp.get_data(as_text=True)
    assert store.labels("proj") == []
