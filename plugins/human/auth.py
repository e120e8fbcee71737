"""Who is asking: annotator tokens (cookie or bearer header) and CSRF tokens for forms.

A browser logs in once with its token; the token then travels in an HttpOnly,
SameSite=Strict cookie. Forms carry a CSRF token derived from the login token with an
HMAC, so another site can neither read nor forge it, and the server keeps no session
state. Scripts send ``Authorization: Bearer <token>`` instead; a browser never attaches
that header cross-site, so bearer requests need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping

COOKIE = "alignkit_token"


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def csrf_token(login_token: str) -> str:
    return hmac.new(login_token.encode("utf-8"), b"alignkit-csrf-v1", hashlib.sha256).hexdigest()


def csrf_ok(login_token: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(csrf_token(login_token), submitted or "")


def same_origin(headers: Mapping[str, str], host_url: str) -> bool:
    """False when the browser says the request came from another origin (defence in depth)."""
    origin = headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") == host_url.rstrip("/")
