"""What the label server accepts: request sizes, JSON nesting, connections, proxy headers.

Declared once here, used by the app, ``serve`` and the ``alignkit label serve`` options.
"""

from __future__ import annotations

MAX_BODY_BYTES = 1 << 20
"""Largest request body (1 MiB; a label is a few hundred bytes). Larger ones get 413 from the Content-Length, unread."""
MAX_JSON_DEPTH = 20
"""Deepest JSON nesting accepted (a label body nests 2 deep); deeper bodies get 400 before ``json.loads`` recurses."""
CONNECTION_LIMIT = 500
"""Open connections waitress serves at once; idle ones beyond it wait in the listen backlog."""
CHANNEL_TIMEOUT = 30
"""Seconds an idle connection (nothing received, no request running) is kept open."""
PROXY_HEADERS = ("x-forwarded-proto", "x-forwarded-host", "x-forwarded-for")
"""Headers believed from ``--trusted-proxy`` (what the nginx/Caddy configs in docs/human_feedback.md send)."""
