"""The web app's rules, through Flask's test client: tokens, CSRF, escaping, ownership, admin."""

from __future__ import annotations

import json
import re

import pytest

from alignkit.plugins.human import auth
from alignkit.plugins.human.app import create_app
from alignkit.plugins.human.store import side_to_choice
from alignkit.plugins.human.store import Store

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


@pytest.fixture
def env(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'labels.db'}")
    store.add_items("proj", [{"prompt": [{"role": "user", "content": "Say hi " + XSS}],
                              "response_a": "hi " + XSS, "response_b": "hello"},
                             {"prompt": "2+2?", "response_a": "4", "response_b": "5"}], overlap=2)
    tokens = {"alice": store.add_annotator("alice"), "bob": store.add_annotator("bob"),
              "root": store.add_annotator("root", admin=True)}
    app = create_app(store)
    yield store, app, tokens
    store.close()


def login(app, token):
    client = app.test_client()
    resp = client.post("/login", data={"token": token})
    assert resp.status_code == 303
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_every_page_and_write_needs_a_token(env):
    store, app, tokens = env
    anon = app.test_client()
    assert anon.get("/").status_code == 401
    assert anon.get("/p/proj").status_code == 401
    assert anon.get("/admin").status_code == 401
    assert anon.get("/api/next?project=proj").status_code == 401
    assert anon.post("/api/labels", json={"item_id": 1, "choice": "left"}).status_code == 401
    assert anon.post("/p/proj/label", data={"item_id": 1, "choice": "left"}).status_code == 401
    assert anon.get("/api/next?project=proj", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert anon.post("/login", data={"token": "nope"}).status_code == 401
    assert store.labels("proj") == []


def test_untrusted_text_is_escaped(env):
    store, app, tokens = env
    client = login(app, tokens["alice"])
    html = client.get("/p/proj").get_data(as_text=True)
    assert "<script>window" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html
    csp = client.get("/p/proj").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_form_needs_csrf_and_same_origin(env):
    store, app, tokens = env
    client = login(app, tokens["alice"])
    html = client.get("/p/proj").get_data(as_text=True)
    item_id = int(re.search(r'name="item_id" value="(\d+)"', html).group(1))
    assert client.post("/p/proj/label", data={"item_id": item_id, "choice": "left"}).status_code == 403
    bobs = csrf_of(login(app, tokens["bob"]).get("/p/proj").get_data(as_text=True))  # someone else's CSRF token
    assert client.post("/p/proj/label", data={"item_id": item_id, "choice": "left", "csrf": bobs}).status_code == 403
    good = csrf_of(html)
    assert client.post("/p/proj/label", data={"item_id": item_id, "choice": "left", "csrf": good},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert store.labels("proj") == []
    resp = client.post("/p/proj/label", data={"item_id": item_id, "choice": "left", "csrf": good,
                                              "principle": ["honest"], "comment": "fine"})
    assert resp.status_code == 303
    # the same form again (a double click, a resent request): still one label
    assert client.post("/p/proj/label", data={"item_id": item_id, "choice": "left", "csrf": good}).status_code == 303
    rows = store.labels("proj")
    assert len(rows) == 1 and rows[0].annotator == "alice"
    swapped = store.assignment(item_id, store.authenticate(tokens["alice"]).id).swapped
    assert rows[0].choice == ("b" if swapped else "a")  # the left side, in the item's own terms


def test_cookie_alone_cannot_write_json(env):
    store, app, tokens = env
    client = login(app, tokens["alice"])
    item = client.get("/api/next?project=proj").get_json()  # reading with the cookie is fine
    assert item["item_id"] is not None
    assert client.post("/api/labels", json={"item_id": item["item_id"], "choice": "left"}).status_code == 401


def test_api_annotators_write_only_their_own_labels(env):
    store, app, tokens = env
    client = app.test_client()
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    item = client.get("/api/next?project=proj", headers=alice).get_json()
    # bob cannot write a label in alice's name, nor label an item he was never shown
    resp = client.post("/api/labels", headers=bob, json={"item_id": item["item_id"], "choice": "left",
                                                         "annotator": "alice"})
    assert resp.status_code == 403
    assert client.post("/api/labels", headers=bob, json={"item_id": 2, "choice": "left"}).status_code == 409
    resp = client.post("/api/labels", headers=alice, json={"item_id": item["item_id"], "choice": "right"})
    assert resp.status_code == 201 and resp.get_json()["status"] == "stored"
    again = client.post("/api/labels", headers=alice, json={"item_id": item["item_id"], "choice": "right"})
    assert again.status_code == 200 and again.get_json() == {"status": "unchanged",
                                                             "label_id": resp.get_json()["label_id"]}
    bad = client.post("/api/labels", headers=alice, json={"item_id": item["item_id"], "choice": "<b>"})
    assert bad.status_code == 400
    assert [(r.annotator, r.item_id) for r in store.labels("proj")] == [("alice", item["item_id"])]


def test_side_mapping():
    assert [side_to_choice(s, False) for s in ("left", "right", "tie", "skip")] == ["a", "b", "tie", "skip"]
    assert [side_to_choice(s, True) for s in ("left", "right", "tie", "skip")] == ["b", "a", "tie", "skip"]


def test_admin_page_and_export(env):
    store, app, tokens = env
    client = app.test_client()
    for name, choice in (("alice", "left"), ("bob", "left")):
        headers = {"Authorization": f"Bearer {tokens[name]}"}
        for _ in range(2):
            item = client.get("/api/next?project=proj", headers=headers).get_json()
            client.post("/api/labels", headers=headers, json={"item_id": item["item_id"], "choice": choice})
    assert login(app, tokens["alice"]).get("/admin").status_code == 403
    admin = login(app, tokens["root"])
    html = admin.get("/admin").get_data(as_text=True)
    assert "Krippendorff" in html and "alice / bob" in html and "seconds per label" in html
    resp = admin.get("/admin/export?project=proj&aggregate=none")
    assert resp.status_code == 200 and resp.headers["Content-Disposition"].startswith("attachment")
    rows = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert len(rows) == 4 and {r["annotator"] for r in rows} == {"alice", "bob"}
    agg = [json.loads(line) for line in admin.get("/admin/export?project=proj&aggregate=dawid_skene")
           .get_data(as_text=True).splitlines()]
    assert len(agg) == 2 and all(r["votes"] == 2 for r in agg)
    assert admin.get("/api/progress?project=proj").get_json()["complete"] == 2
    assert login(app, tokens["bob"]).get("/admin/export?project=proj").status_code == 403


# -- sign-in and sessions ------------------------------------------------------------------------


def session_cookie(resp) -> str:
    """The value of the session cookie a response sets."""
    header = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(auth.COOKIE + "="))
    return header.split(";", 1)[0].split("=", 1)[1]


def test_a_link_with_a_token_signs_nobody_in(env):
    """Login CSRF: another site linking to /login?token=ITS_TOKEN must not put its session in your browser."""
    store, app, tokens = env
    client = app.test_client()
    resp = client.get(f"/login?token={tokens['alice']}")
    assert resp.status_code == 200 and not resp.headers.getlist("Set-Cookie")
    assert tokens["alice"] not in resp.get_data(as_text=True)  # the form is not even prefilled
    assert client.get("/").status_code == 401
    # nor can another site post it: browsers send Origin (and Sec-Fetch-Site) with every POST
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}):
        resp = client.post("/login", data={"token": tokens["alice"]}, headers=headers)
        assert resp.status_code == 403 and not resp.headers.getlist("Set-Cookie"), headers
    assert client.get("/").status_code == 401
    # our own page's POST (same origin) signs in
    resp = client.post("/login", data={"token": tokens["alice"]},
                       headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert resp.status_code == 303


def test_the_cookie_holds_a_session_not_the_token(env):
    store, app, tokens = env
    resp = app.test_client().post("/login", data={"token": tokens["alice"]})
    header = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(auth.COOKIE + "="))
    assert tokens["alice"] not in header
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" not in header  # plain http here
    assert store.session_annotator(session_cookie(resp)).name == "alice"


def test_a_copied_cookie_stops_working_after_logout(env):
    store, app, tokens = env
    client = app.test_client()
    cookie = session_cookie(client.post("/login", data={"token": tokens["alice"]}))
    thief = app.test_client()  # someone who copied the cookie out of the browser
    thief.set_cookie(auth.COOKIE, cookie)
    assert thief.get("/api/next?project=proj").status_code == 200
    csrf = csrf_of(client.get("/p/proj").get_data(as_text=True))
    assert client.post("/logout", data={}).status_code == 403  # logging someone out needs the CSRF token too
    resp = client.post("/logout", data={"csrf": csrf})
    assert resp.status_code == 303
    assert any(h.startswith(auth.COOKIE + "=;") for h in resp.headers.getlist("Set-Cookie"))
    assert thief.get("/api/next?project=proj").status_code == 401
    assert thief.get("/").status_code == 401
    assert store.session_annotator(cookie) is None
    # the token itself is still the credential: signing in again works, for scripts too
    assert login(app, tokens["alice"]).get("/").status_code in (200, 302)
    assert app.test_client().get("/api/next?project=proj",
                                 headers={"Authorization": f"Bearer {tokens['alice']}"}).status_code == 200


def test_rotating_the_token_ends_its_sessions(env):
    store, app, tokens = env
    client = login(app, tokens["alice"])
    assert client.get("/api/next?project=proj").status_code == 200
    store.rotate_token("alice")
    assert client.get("/api/next?project=proj").status_code == 401


def test_csrf_token_belongs_to_the_session(env):
    store, app, tokens = env
    first, second = login(app, tokens["alice"]), login(app, tokens["alice"])  # two browsers, two sessions
    html = first.get("/p/proj").get_data(as_text=True)
    item_id = int(re.search(r'name="item_id" value="(\d+)"', html).group(1))
    other = csrf_of(second.get("/p/proj").get_data(as_text=True))
    assert other != csrf_of(html)
    assert first.post("/p/proj/label", data={"item_id": item_id, "choice": "left", "csrf": other}).status_code == 403
    assert first.post("/p/proj/label", data={"item_id": item_id, "choice": "left",
                                             "csrf": csrf_of(html)}).status_code == 303


def test_a_body_over_the_limit_is_refused_before_sign_in_is_checked(env):
    store, app, tokens = env
    anon = app.test_client()
    resp = anon.post("/api/labels", data=b"x" * ((1 << 20) + 1), content_type="application/json")
    assert resp.status_code == 413 and "larger than 1048576 bytes" in resp.get_json()["error"]
    assert anon.post("/api/labels", data=b"x" * (1 << 20), content_type="application/json").status_code == 401
