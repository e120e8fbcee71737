"""An annotator in a real browser (Debian's chromium, driven by Playwright) against the real server.

Needs ``apt-get install chromium`` and ``pip install playwright``; never ``playwright install``:
the browser is the system one, given by ``executable_path``. Skipped only where
/usr/bin/chromium is absent.
"""

from __future__ import annotations

import os

import pytest

from alignkit.plugins.human.store import Store, side_to_choice

CHROMIUM = "/usr/bin/chromium"
XSS_SCRIPT = "<script>window.__xss = 'script'</script>"
XSS_IMG = "<img src=x onerror=\"window.__xss = 'img'\">"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.mark.slow  # drives chromium (over 3 s)
def test_annotator_labels_by_click_and_keys(browser, label_server, http):
    expect = pytest.importorskip("playwright.sync_api").expect
    store = Store(label_server.db)
    store.ensure_project("web", overlap=1, principles=["helpful", "harmless"])
    store.add_items("web", [
        {"prompt": "Pick the safe reply " + XSS_SCRIPT, "response_a": "Sure " + XSS_IMG, "response_b": XSS_SCRIPT},
        {"prompt": "What is 2 + 2?", "response_a": "4", "response_b": "5"},
        {"prompt": "What is 3 + 3?", "response_a": "6", "response_b": "7"},
        {"prompt": "What is 4 + 4?", "response_a": "8", "response_b": "9"},
        {"prompt": "What is 5 + 5?", "response_a": "10", "response_b": "11"},
    ])
    alice, bob = store.add_annotator("alice"), store.add_annotator("bob")
    alice_id = store.authenticate(alice).id

    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # no token: refused, and shown the sign-in form
    resp = page.goto(label_server.url + "/p/web")
    assert resp.status == 401 and page.locator("#token").count() == 1
    page.fill("#token", "not-a-token")
    page.click("#sign-in")
    assert page.locator("#error").inner_text() == "Unknown token."
    page.fill("#token", alice)
    page.click("#sign-in")
    page.wait_for_url("**/p/web")

    # the XSS item comes first: the payloads are text, nothing ran, no <img> was created
    left, right = page.locator("#left .text").inner_text(), page.locator("#right .text").inner_text()
    assert {left, right} == {"Sure " + XSS_IMG, XSS_SCRIPT}
    assert XSS_SCRIPT in page.locator("#prompt").inner_text()
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 1  # ours only
    assert page.evaluate("window.__xss") is None and not dialogs

    # label by click (with a principle tag and a comment), then by the keys 2, 3 and s
    page.check("input[name=principle][value=harmless]")
    page.fill("#comment", "the other one is a script")
    sides = []
    first_item = int(page.locator("input[name=item_id]").get_attribute("value"))
    page.click("#choose-left")
    sides.append((first_item, "left"))
    for key, side in (("2", "right"), ("3", "tie"), ("s", "skip")):
        expect(page.locator("#progress")).to_contain_text(f"You: {len(sides)} labelled")
        item_id = int(page.locator("input[name=item_id]").get_attribute("value"))
        assert item_id != sides[-1][0]
        page.locator("#comment").press(key)  # typing in the comment box is not a shortcut
        assert page.locator("#comment").input_value() == key
        assert page.locator("input[name=item_id]").get_attribute("value") == str(item_id)
        page.fill("#comment", "")
        page.click("#prompt")  # focus leaves the text box
        page.keyboard.press(key)
        sides.append((item_id, side))
        expect(page.locator("#progress")).to_contain_text(f"You: {len(sides)} labelled")
    assert page.locator("#progress").inner_text().startswith("You: 4 labelled")

    # the labels are in the database, mapped back through the recorded side order
    rows = {r.item_id: r for r in store.labels("web")}
    assert len(rows) == 4
    for item_id, side in sides:
        swapped = store.assignment(item_id, alice_id).swapped
        assert rows[item_id].annotator == "alice"
        assert rows[item_id].choice == side_to_choice(side, swapped)
    assert rows[first_item].principles == ("harmless",) and rows[first_item].comment == "the other one is a script"
    assert rows[sides[1][0]].comment == ""

    # another annotator's token cannot write alice's labels; bob never saw these items
    last_item = sides[-1][0]
    status, body = http("POST", label_server.url + "/api/labels", {"item_id": last_item, "choice": "left",
                                                                   "annotator": "alice"}, token=bob)
    assert status == 403
    assert http("POST", label_server.url + "/api/labels", {"item_id": last_item, "choice": "left"}, token=bob)[0] == 409
    assert http("POST", label_server.url + "/api/labels", {"item_id": last_item, "choice": "left"})[0] == 401
    # a form post from this page without its CSRF token is refused even with alice's cookie
    forged = page.request.post(label_server.url + "/p/web/label", form={"item_id": str(last_item), "choice": "left"})
    assert forged.status == 403
    assert store.labels("web")[-1].choice == rows[last_item].choice and len(store.labels("web")) == 4

    # the admin page is refused to alice; the admin sees progress and downloads the labels
    assert page.goto(label_server.url + "/admin").status == 403
    context.close()
    admin = browser.new_context(accept_downloads=True)
    page = admin.new_page()
    boss = store.add_annotator("boss", admin=True)
    page.goto(f"{label_server.url}/login?token={boss}")  # a token in a link signs nobody in: it is a form
    assert page.locator("#token").input_value() == "" and not admin.cookies()
    page.fill("#token", boss)
    page.click("#sign-in")
    page.wait_for_url(label_server.url + "/")
    page.goto(label_server.url + "/admin")
    assert "Krippendorff" in page.locator("main").inner_text()
    assert "alice" in page.locator("main table").first.inner_text()
    with page.expect_download() as download:
        page.click("text=every label")
    lines = open(download.value.path()).read().splitlines()
    assert len(lines) == 3  # four labels, one of them a skip
    admin.close()
