"""The thin web layer's shared parts: one open-redirect check, one redaction marker, one category table."""
from __future__ import annotations

import pytest

from intercity.audit import capture, categories, query, rules, timeline
from intercity.dokku import commands, parsers, transcript
from intercity.web import local_path


@pytest.mark.parametrize("target, expected", [
    ("/servers/3", "/servers/3"),
    ("/servers/3?x=1#env", "/servers/3?x=1#env"),
    ("//evil.example/servers", "/home"),
    ("/\\evil.example", "/home"),  # browsers read "/\" as "//"
    ("https://evil.example/", "/home"),
    ("servers/3", "/home"),
    ("", "/home"),
    (None, "/home"),
])
def test_next_only_leads_to_this_site(target, expected):
    assert local_path(target, "/home") == expected


def test_one_redaction_marker_and_one_category_table():
    for module in (capture, timeline, commands, parsers, transcript):
        assert module.REDACTED is rules.REDACTED
    assert query.CHIPS == tuple(categories.LABELS.items())
    assert rules.CATEGORIES == ("security", "app", "server", "team")
