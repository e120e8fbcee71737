"""The annotation web app (Flask, server-rendered, served by waitress).

Pages (a valid annotator token is needed for every one except ``/login``):

    /                      projects and your progress
    /p/<project>           the next pair: prompt, two responses side by side; A / B / tie / skip
    /admin                 progress per annotator, agreement, time per label, downloads (admin token)
    /admin/export          preference JSONL (raw, majority or dawid_skene)

JSON API for scripts (``Authorization: Bearer <token>``):

    GET  /api/next?project=NAME      {"item_id", "prompt", "left", "right"} or {"item_id": null}
    POST /api/labels                 {"item_id", "choice": left|right|tie|skip, "principles", "comment"}
    GET  /api/progress?project=NAME  counts (admin)

Prompts and responses are untrusted model output: templates autoescape them and the
Content-Security-Policy forbids inline script, so a response holding ``<script>`` is text.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, abort, g, jsonify, make_response, redirect, render_template, request, url_for

from alignkit.plugins.human import auth
from alignkit.plugins.human.store import NotAssigned, NotFound, Store, StoreError

log = logging.getLogger("alignkit.human")

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send Origin: null on our own forms
    "Cache-Control": "no-store",
}


def prompt_turns(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt or []]


def create_app(store: Store) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.extensions["alignkit_store"] = store

    # -- who is asking -------------------------------------------------------------------

    @app.before_request
    def _identify() -> None:
        g.bearer = auth.bearer(request.headers)
        g.token = g.bearer or request.cookies.get(auth.COOKIE)
        g.annotator = store.authenticate(g.token)

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
                g.token or "", request.form.get("csrf")):
            abort(403)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"me": g.get("annotator"), "csrf": auth.csrf_token(g.token) if g.get("annotator") else ""}

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

    # -- login -----------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        token = request.values.get("token", "").strip()
        if not token:
            return render_template("login.html", error=None)
        if request.method == "POST" and not auth.same_origin(request.headers, request.host_url):
            abort(403)
        if store.authenticate(token) is None:
            return render_template("login.html", error="Unknown token."), 401
        response = redirect(url_for("index"), code=303)
        response.set_cookie(auth.COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure,
                            max_age=30 * 24 * 3600)
        return response

    @app.post("/logout")
    def logout() -> Any:
        require_annotator()
        check_form()
        response = redirect(url_for("login"), code=303)
        response.delete_cookie(auth.COOKIE)
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
        try:
            item_id = int(request.form.get("item_id", ""))
        except ValueError:
            abort(400)
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
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("item_id"), int):
            return jsonify(error="send a JSON object with an integer item_id and a choice"), 400
        if body.get("annotator") not in (None, me.name):
            return jsonify(error="an annotator can only write their own labels"), 403
        principles = body.get("principles") or []
        if not isinstance(principles, list):
            return jsonify(error="principles must be a list of strings"), 400
        status, label_id = _save(me, body["item_id"], str(body.get("choice", "")), [str(p) for p in principles],
                                 str(body.get("comment") or ""))
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


def serve(store: Store, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    """Serve the app with waitress (a production WSGI server; no debug mode, no reloader)."""
    from waitress import serve as waitress_serve

    waitress_serve(create_app(store), host=host, port=port, threads=threads, ident="alignkit-label",
                   clear_untrusted_proxy_headers=True)
