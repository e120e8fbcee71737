"""Who is asking: annotator tokens, browser sessions, and CSRF tokens for forms.

The token is the long-lived credential. A browser signs in by posting it once (a POST
from our own origin only: a link or another site cannot sign someone in); the server then
starts a session and the browser keeps only the random session id, in an HttpOnly,
SameSite=Strict cookie (Secure when the app is reached over https). Signing out deletes the
session on the server, so a copied cookie stops working too. Forms carry a CSRF token, an
HMAC of the session id, which another site can neither read nor forge. Scripts send
``Authorization: Bearer <token>`` instead; a browser never attaches that header
cross-site, so bearer requests need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping

COOKIE = "alignkit_session"
LEGACY_COOKIE = "alignkit_token"
"""Before sessions the cookie held the token itself; signing in or out deletes it from the browser."""


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode("utf-8"), b"alignkit-csrf-v2", hashlib.sha256).hexdigest()


def csrf_ok(session_id: str | None, submitted: str | None) -> bool:
    return bool(session_id) and bool(submitted) and hmac.compare_digest(csrf_token(session_id or ""), submitted or "")


def same_origin(headers: Mapping[str, str], host_url: str) -> bool:
    """False when the browser says the request came from another origin.

    ``host_url`` is the app's own origin as the client sees it: behind a TLS proxy that is
    ``https://...`` only when waitress trusts the proxy's forwarded headers (``--trusted-proxy``).
    Browsers send ``Origin`` on every POST; scripts and old browsers may send none, which passes.
    """
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") == host_url.rstrip("/")
