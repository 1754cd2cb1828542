"""The suite's reuse of Werkzeug's compiled URL builders builds every route's URLs as a fresh compile does."""
from __future__ import annotations

import pytest

from tests.support import url_builders


@pytest.mark.sqlite_only
def test_every_route_builds_the_same_url_with_a_reused_builder(app):
    checked = 0
    for rule in app.url_map.iter_rules():
        values = {name: 1 for name in rule.arguments}
        for append_unknown in (False, True):
            fresh = url_builders._compile(rule, append_unknown).__get__(rule, None)
            reused = url_builders._reused(rule, append_unknown).__get__(rule, None)
            extra = {"page": "2"} if append_unknown else {}
            assert reused(**values, **extra) == fresh(**values, **extra), rule.rule
        checked += 1
    assert checked > 100  # every blueprint's routes, not a handful
