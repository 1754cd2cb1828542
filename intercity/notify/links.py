"""Absolute links for messages, built by the URL map against INTERCITY_BASE_URL (jobs have no request)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def external(endpoint: str, **values) -> str:
    """url_for(endpoint, **values) as an absolute URL under INTERCITY_BASE_URL (which may have a path prefix)."""
    base = urlsplit(current_app.config["INTERCITY_BASE_URL"].rstrip("/"))
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)
