"""Behind a TLS-terminating proxy: the deployment in docs/human_feedback.md, with its forwarded headers.

The test plays the proxy: it talks plain HTTP from 127.0.0.1 and sends the headers the
documented nginx block sets, as nginx would for a browser on https://labels.example.org.
"""

from __future__ import annotations

import http.client
import re
import shlex
import urllib.parse
from pathlib import Path

from alignkit.plugins.human import auth
from alignkit.plugins.human.store import Store

DOC = Path(__file__).resolve().parents[3] / "docs" / "human_feedback.md"
SITE = "https://labels.example.org"
NGINX_VARIABLES = {"$host": "labels.example.org", "$scheme": "https", "$proxy_add_x_forwarded_for": "203.0.113.7"}


def documented_deployment() -> tuple[list[str], dict[str, str]]:
    """The ``serve`` options of the documented command (less --db/--port) and the nginx block's headers."""
    text = DOC.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("alignkit label serve") and "--trusted-proxy" in ln)
    words = shlex.split(line)[3:]
    options: list[str] = []
    while words:
        word = words.pop(0)
        if word in ("--db", "--port"):
            words.pop(0)  # the test's own database and free port
        else:
            options.append(word)
    headers = {name: NGINX_VARIABLES[value] for name, value in
               re.findall(r"proxy_set_header\s+(\S+)\s+(\S+);", text)}
    return options, headers


def call(port: int, method: str, path: str, headers: dict[str, str], form: dict[str, str] | None = None
         ) -> tuple[int, http.client.HTTPResponse, str]:
    """One request, redirects not followed (the proxy passes them to the browser)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = None
    headers = dict(headers)
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, resp, text


def sign_in(port: int, headers: dict[str, str], token: str) -> tuple[int, str]:
    """A browser on the https site posting the sign-in form; (status, Set-Cookie of the session)."""
    status, resp, _ = call(port, "POST", "/login", {**headers, "Origin": SITE, "Sec-Fetch-Site": "same-origin"},
                           {"token": token})
    cookies = [c for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith(auth.COOKIE + "=")]
    return status, (cookies[0] if cookies else "")


def test_the_documented_proxy_deployment_signs_in_and_labels_over_https(start_label_server):
    options, headers = documented_deployment()
    assert options[options.index("--trusted-proxy") + 1] == "127.0.0.1"
    assert headers == {"Host": "labels.example.org", "X-Forwarded-Proto": "https",
                       "X-Forwarded-Host": "labels.example.org", "X-Forwarded-For": "203.0.113.7"}
    server = start_label_server(*options)
    store = Store(server.db)
    store.add_items("proj", [{"prompt": "2+2?", "response_a": "4", "response_b": "5"}])
    token = store.add_annotator("alice")

    status, cookie = sign_in(server.port, headers, token)
    assert status == 303, status
    attributes = [a.strip() for a in cookie.split(";")]
    assert "Secure" in attributes and "HttpOnly" in attributes and "SameSite=Strict" in attributes
    session = {**headers, "Cookie": cookie.split(";", 1)[0]}

    status, _, html = call(server.port, "GET", "/p/proj", session)
    assert status == 200
    item_id = re.search(r'name="item_id" value="(\d+)"', html).group(1)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    status, _, _ = call(server.port, "POST", "/p/proj/label", {**session, "Origin": SITE},
                        {"item_id": item_id, "choice": "left", "csrf": csrf})
    assert status == 303 and [r.annotator for r in store.labels("proj")] == ["alice"]
    # a page of another site is still another origin behind the proxy
    status, _, _ = call(server.port, "POST", "/p/proj/label", {**session, "Origin": "https://evil.example"},
                        {"item_id": item_id, "choice": "right", "csrf": csrf})
    assert status == 403 and store.labels("proj")[0].choice in ("a", "b")
    status, resp, _ = call(server.port, "POST", "/logout", {**session, "Origin": SITE}, {"csrf": csrf})
    assert status == 303
    assert call(server.port, "GET", "/p/proj", session)[0] == 401  # the session ended on the server
    store.close()


def test_forwarded_headers_from_anyone_else_are_ignored(start_label_server):
    """The same headers from an address that is not the trusted proxy are removed: the https form is refused."""
    _, headers = documented_deployment()
    server = start_label_server("--trusted-proxy", "192.0.2.1")  # not us (we are 127.0.0.1)
    token = Store(server.db).add_annotator("alice")
    assert sign_in(server.port, headers, token) == (403, "")
    # what happened to everybody behind an https proxy before --trusted-proxy existed
    plain = start_label_server()
    assert sign_in(plain.port, headers, Store(plain.db).add_annotator("bob")) == (403, "")


def test_the_rfc7239_forwarded_header(start_label_server):
    server = start_label_server("--trusted-proxy", "127.0.0.1", "--trusted-proxy-headers", "forwarded")
    token = Store(server.db).add_annotator("alice")
    headers = {"Host": "127.0.0.1", "Forwarded": 'for=203.0.113.7;host=labels.example.org;proto=https'}
    status, cookie = sign_in(server.port, headers, token)
    assert status == 303 and "Secure" in [a.strip() for a in cookie.split(";")]
    # with only Forwarded believed, X-Forwarded-Proto from the same proxy is dropped
    x_headers = {"Host": "labels.example.org", "X-Forwarded-Proto": "https"}
    assert sign_in(server.port, x_headers, token) == (403, "")


def test_a_wrong_proxy_option_is_an_error_before_anything_starts(tmp_path, capsys):
    from alignkit.plugins.human.cli import main

    db = f"sqlite:///{tmp_path / 'labels.db'}"
    assert main(["serve", "--db", db, "--trusted-proxy", "127.0.0.1", "--trusted-proxy-headers", "x-forwarded-bogus"]) == 2
    assert "unknown trusted_proxy_headers value (x-forwarded-bogus)" in capsys.readouterr().err
    assert main(["serve", "--db", db, "--trusted-proxy-headers", "forwarded"]) == 2
    assert "--trusted-proxy-headers needs --trusted-proxy ADDR" in capsys.readouterr().err
    assert main(["serve", "--db", db, "--channel-timeout", "0"]) == 2
    assert not Store(db).has_admin()  # no admin token was made (and shown) for a server that never ran
