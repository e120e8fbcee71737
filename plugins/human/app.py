"""The annotation web app (Flask, server-rendered, served by waitress).

Pages (a signed-in annotator is needed for every one except ``/login`` and ``/healthz``):

    /                      projects and your progress
    /p/<project>           the next pair: prompt, two responses side by side; A / B / tie / skip
    /admin                 progress per annotator, agreement, time per label, downloads (admin token)
    /admin/export          preference JSONL (raw, majority or dawid_skene)

JSON API for scripts (``Authorization: Bearer <token>``):

    GET  /api/next?project=NAME      {"item_id", "prompt", "left", "right"} or {"item_id": null}
    POST /api/labels                 {"item_id", "choice": left|right|tie|skip, "principles", "comment"}
                                     (strict: item_id an integer 1..2^31-1, not a bool; 400 names the field)
    GET  /api/progress?project=NAME  counts (admin)

Prompts and responses are untrusted model output: templates autoescape them and the
Content-Security-Policy forbids inline script, so a response holding ``<script>`` is text.

Behind a TLS-terminating proxy, ``serve(trusted_proxy=...)`` lets waitress believe the
proxy's X-Forwarded-* (or Forwarded) headers, so the app sees https and the proxy's host:
the Origin check of forms compares against that, and the session cookie gets Secure.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Sequence

from flask import Flask, Response, abort, g, jsonify, make_response, redirect, render_template, request, url_for

from alignkit.plugins.human import auth
from alignkit.plugins.human.jsonbody import BadBody, parse_object
from alignkit.plugins.human.limits import CHANNEL_TIMEOUT, CONNECTION_LIMIT, MAX_BODY_BYTES, PROXY_HEADERS
from alignkit.plugins.human.store import SESSION_TTL, NotAssigned, NotFound, Store, StoreError, check_item_id

log = logging.getLogger("alignkit.human")

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send Origin: null on our own forms
    "Cache-Control": "no-store",
}


FORM_ITEM_ID = re.compile(r"[0-9]{1,10}")
"""A form's item_id: ASCII digits only (``int()`` would also take " 1", "1_0" and other scripts' digits)."""


def prompt_turns(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt or []]


def create_app(store: Store) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["alignkit_store"] = store

    # -- who is asking -------------------------------------------------------------------

    @app.before_request
    def _identify() -> None:
        # waitress already refuses such bodies unread (max_request_body_size); this covers other servers
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            abort(413)
        g.bearer = auth.bearer(request.headers)
        g.session_id = None if g.bearer else request.cookies.get(auth.COOKIE)
        g.annotator = store.authenticate(g.bearer) if g.bearer else store.session_annotator(g.session_id)

    def require_annotator() -> Any:
        if g.annotator is None:
            if request.path.startswith("/api/") or request.method != "GET":
                abort(401)
            abort(make_response(render_template("login.html", error=None), 401))
        return g.annotator

    def require_admin() -> Any:
        annotator = require_annotator()
        if not annotator.is_admin:
            abort(403)
        return annotator

    def check_form() -> None:
        """Cookie-authenticated writes need the CSRF token and, when sent, our own Origin."""
        if g.bearer:
            return
        if not auth.same_origin(request.headers, request.host_url) or not auth.csrf_ok(
                g.session_id, request.form.get("csrf")):
            abort(403)

    def bad_request(message: str) -> Any:
        """A 400 that says which field is wrong: JSON for the API, a page for forms."""
        if request.path.startswith("/api/"):
            return abort(make_response(jsonify(error=message), 400))
        return abort(make_response(render_template("message.html", title="Bad request", text=message), 400))

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        session_id = g.get("session_id")
        return {"me": g.get("annotator"),
                "csrf": auth.csrf_token(session_id) if g.get("annotator") and session_id else ""}

    @app.after_request
    def _headers(response: Response) -> Response:
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.errorhandler(401)
    def _unauthorised(exc: Any) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(error="a valid annotator token is required"), 401
        return render_template("login.html", error="A valid annotator token is required."), 401

    @app.errorhandler(403)
    def _forbidden(exc: Any) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(error="forbidden"), 403
        return render_template("message.html", title="Forbidden",
                               text="This page needs another token, or the form expired: reload it."), 403

    @app.errorhandler(413)
    def _too_large(exc: Any) -> Any:
        text = f"The request body is larger than {MAX_BODY_BYTES} bytes."
        if request.path.startswith("/api/"):
            return jsonify(error=text), 413
        return render_template("message.html", title="Too large", text=text), 413

    # -- login -----------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        """GET shows the form (a token in the URL is ignored: a link must not sign anyone in); POST signs in."""
        if request.method == "GET":
            return render_template("login.html", error=None)
        if not auth.same_origin(request.headers, request.host_url):  # login CSRF: another site posting its token
            abort(403)
        token = request.form.get("token", "").strip()
        if not token:
            return render_template("login.html", error="Paste your token."), 400
        annotator = store.authenticate(token)
        if annotator is None:
            return render_template("login.html", error="Unknown token."), 401
        store.end_session(request.cookies.get(auth.COOKIE))  # a sign-in replaces this browser's old session
        response = redirect(url_for("index"), code=303)
        response.set_cookie(auth.COOKIE, store.start_session(annotator.id), httponly=True, samesite="Strict",
                            secure=request.is_secure, max_age=int(SESSION_TTL.total_seconds()))
        response.delete_cookie(auth.LEGACY_COOKIE)
        return response

    @app.post("/logout")
    def logout() -> Any:
        require_annotator()
        check_form()
        store.end_session(g.session_id)  # server-side: a copy of the cookie stops working as well
        response = redirect(url_for("login"), code=303)
        response.delete_cookie(auth.COOKIE, httponly=True, samesite="Strict", secure=request.is_secure)
        response.delete_cookie(auth.LEGACY_COOKIE)
        return response

    # -- annotating --------------------------------------------------------------------------

    @app.get("/")
    def index() -> Any:
        me = require_annotator()
        projects = [(p, store.progress(p.name), store.annotator_count(p.name, me.id)) for p in store.projects()]
        if len(projects) == 1 and not me.is_admin:
            return redirect(url_for("annotate", project=projects[0][0].name))
        return render_template("index.html", projects=projects)

    @app.get("/p/<project>")
    def annotate(project: str) -> Any:
        me = require_annotator()
        project_row = store.project(project)
        if project_row is None:
            abort(404)
        picked = store.next_item(project, me.id)
        progress = store.progress(project)
        mine = store.annotator_count(project, me.id)
        if picked is None:
            return render_template("done.html", project=project_row, progress=progress, mine=mine)
        item, assignment = picked
        left, right = (item.response_b, item.response_a) if assignment.swapped else (item.response_a, item.response_b)
        return render_template("annotate.html", project=project_row, item=item, turns=prompt_turns(item.prompt),
                               left=left, right=right, progress=progress, mine=mine)

    @app.post("/p/<project>/label")
    def label_form(project: str) -> Any:
        me = require_annotator()
        check_form()
        raw_id = request.form.get("item_id", "")
        if not FORM_ITEM_ID.fullmatch(raw_id):
            bad_request(f"item_id must be a positive integer, got {raw_id[:40]!r}")
        try:
            item_id = check_item_id(int(raw_id))
        except StoreError as exc:
            bad_request(str(exc))
        _save(me, item_id, request.form.get("choice", ""), request.form.getlist("principle"),
              request.form.get("comment", ""), project=project)
        return redirect(url_for("annotate", project=project), code=303)

    def _save(me: Any, item_id: int, side: str, principles: list[str], comment: str,
              project: str | None = None) -> tuple[str, int]:
        """Store ``me``'s label for an item they were shown; ``side`` is what they clicked."""
        try:
            return store.submit(item_id, me.id, side=side, project=project, principles=principles, comment=comment)
        except NotFound:
            abort(404)
        except NotAssigned:  # only pairs shown to this annotator, in a recorded order
            abort(make_response(jsonify(error="this item was not assigned to you"), 409))
        except StoreError as exc:
            abort(make_response(jsonify(error=str(exc)), 400))

    # -- JSON API ----------------------------------------------------------------------------

    @app.get("/api/next")
    def api_next() -> Any:
        me = require_annotator()
        project = request.args.get("project", "")
        if store.project(project) is None:
            return jsonify(error=f"no project {project!r}"), 404
        picked = store.next_item(project, me.id)
        if picked is None:
            return jsonify(item_id=None)
        item, assignment = picked
        left, right = (item.response_b, item.response_a) if assignment.swapped else (item.response_a, item.response_b)
        return jsonify(item_id=item.id, prompt=item.prompt, left=left, right=right)

    @app.post("/api/labels")
    def api_label() -> Any:
        me = require_annotator()
        if not g.bearer:  # a cookie alone never authorises a JSON write (no CSRF token there)
            abort(401)
        if not request.is_json:
            bad_request("send the label as JSON, with Content-Type: application/json")
        try:
            body = parse_object(request.get_data(cache=False))
            item_id, choice, principles, comment, annotator = label_fields(body)
        except (BadBody, StoreError) as exc:
            return bad_request(str(exc))
        if annotator not in (None, me.name):
            return jsonify(error="an annotator can only write their own labels"), 403
        status, label_id = _save(me, item_id, choice, principles, comment)
        return jsonify(status=status, label_id=label_id), (201 if status == "stored" else 200)

    @app.get("/api/progress")
    def api_progress() -> Any:
        require_admin()
        return jsonify(store.progress(request.args.get("project", "")))

    # -- admin -------------------------------------------------------------------------------

    @app.get("/admin")
    def admin() -> Any:
        require_admin()
        from alignkit.plugins.human.agreement import agreement

        rows = []
        for project in store.projects():
            rows.append((project, store.progress(project.name), agreement(store.labels(project.name))))
        return render_template("admin.html", projects=rows)

    @app.get("/admin/export")
    def admin_export() -> Any:
        require_admin()
        from alignkit.plugins.human.interop import export_preferences

        project = request.args.get("project", "")
        method = request.args.get("aggregate", "majority")
        if store.project(project) is None:
            abort(404)
        try:
            records = export_preferences(store, project, aggregate=method)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        response = make_response(body)
        response.headers["Content-Type"] = "application/x-ndjson; charset=utf-8"
        response.headers["Content-Disposition"] = f'attachment; filename="labels-{method}.jsonl"'
        return response

    return app


def label_fields(body: dict[str, Any]) -> tuple[int, str, list[str], str, str | None]:
    """(item_id, choice, principles, comment, annotator) of a label body; ``StoreError`` names a wrong field.

    Types are strict: ``true`` is not item 1 and ``1`` is not a choice; absent or null optional
    fields are empty.
    """
    item_id = check_item_id(body.get("item_id"))
    choice = body.get("choice")
    if not isinstance(choice, str):
        raise StoreError(f"choice must be a string (left, right, tie or skip), got {type(choice).__name__}")
    principles = body.get("principles")
    if principles is None:
        principles = []
    if not isinstance(principles, list) or not all(isinstance(p, str) for p in principles):
        raise StoreError("principles must be a list of strings")
    comment = body.get("comment")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise StoreError(f"comment must be a string, got {type(comment).__name__}")
    annotator = body.get("annotator")
    if annotator is not None and not isinstance(annotator, str):
        raise StoreError(f"annotator must be a string, got {type(annotator).__name__}")
    return item_id, choice, principles, comment, annotator


def waitress_options(*, trusted_proxy: str | None = None, trusted_proxy_headers: Sequence[str] = PROXY_HEADERS,
                     trusted_proxy_count: int = 1, connection_limit: int = CONNECTION_LIMIT,
                     channel_timeout: int = CHANNEL_TIMEOUT) -> dict[str, Any]:
    """waitress settings for the label app: its own limits, proxy trust and idle-connection cleanup.

    ``max_request_body_size`` makes waitress answer 413 from the Content-Length before reading
    the body (it refuses sizes ``>=`` the setting, hence the +1). Idle connections are closed
    after ``channel_timeout`` seconds, checked every ``cleanup_interval``; ``poll()`` instead
    of ``select()`` so more than 1024 descriptors work.
    """
    if connection_limit < 1 or channel_timeout < 1:
        raise ValueError("--connection-limit and --channel-timeout must be at least 1")
    options: dict[str, Any] = {
        "ident": "alignkit-label", "clear_untrusted_proxy_headers": True,
        "max_request_body_size": MAX_BODY_BYTES + 1,
        "connection_limit": connection_limit, "channel_timeout": channel_timeout,
        "cleanup_interval": max(1, min(30, channel_timeout // 2)), "asyncore_use_poll": True,
    }
    if trusted_proxy:
        options.update(trusted_proxy=trusted_proxy, trusted_proxy_headers=set(trusted_proxy_headers),
                       trusted_proxy_count=trusted_proxy_count)
    from waitress.adjustments import Adjustments

    Adjustments(**options)  # waitress's own checks (unknown header names, ...) before anything starts
    return options


def _room_for_connections(connection_limit: int) -> None:
    """Raise the open-file limit to fit the connection limit (plus the database pool), or say what to do."""
    import resource

    needed = connection_limit + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise ValueError(f"--connection-limit {connection_limit} needs about {needed} open files, but the hard limit is "
                     f"{hard}: lower --connection-limit or raise the limit (ulimit -n)")


def serve(store: Store, host: str = "127.0.0.1", port: int = 8000, threads: int = 8, **options: Any) -> None:
    """Serve the app with waitress (a production WSGI server; no debug mode, no reloader).

    ``options`` are ``waitress_options``' (proxy trust, connection limit, channel timeout).
    """
    from waitress import serve as waitress_serve

    adjustments = waitress_options(**options)
    _room_for_connections(adjustments["connection_limit"])
    waitress_serve(create_app(store), host=host, port=port, threads=threads, **adjustments)
