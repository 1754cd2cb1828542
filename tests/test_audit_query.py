"""The timeline's query language (GitHub audit-log syntax): each qualifier, negation, ranges and errors."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from intercity.audit import query
from intercity.audit.actor import Actor
from intercity.audit.query import Filter, QueryError
from intercity.audit.rules import Scope
from intercity.extensions import db
from intercity.models import AuditEntry, Operation
from tests.support.timeline_data import append_raw

DEV = Actor("user", 2, "dev@example.com", "member")
OPS = Actor("user", 1, "ops@example.com", "admin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _operations():
    # env.apply operations are no request of their own: they add no entries to the eight below.
    for op_id, status in ((1, "succeeded"), (2, "queued"), (3, "failed")):
        db.session.add(Operation(id=op_id, kind="env.apply", category="security", server_id=1, server_name="prod-1",
                                 app_id=1, app_name="api", scope="app:1", payload="{}", status=status))
    db.session.commit()


@pytest.fixture
def log(redis_queue, app):
    """Eight entries, seq 1..8, that each qualifier tells apart."""
    _operations()
    api = Scope(1, "prod-1", 1, "api")
    append_raw([
        dict(action="env_var.created", category="security", actor=DEV, scope=api, target_label="DATABASE_URL",
             created_at=at("2026-01-01T10:00"), operation_id=1),
        dict(action="operation.succeeded", category="security", actor=DEV.on_behalf("worker"), scope=api,
             created_at=at("2026-01-01T10:01"), operation_id=1),
        dict(action="deploy_key.deleted", category="security", actor=OPS, scope=Scope(1, "prod-1"),
             target_label="ci-bot", created_at=at("2026-01-15T00:00"), operation_id=3),
        dict(action="app.created", category="app", actor=OPS, scope=Scope(2, "prod-2", 5, "web"),
             created_at=at("2026-01-31T23:59:59")),
        dict(action="server.created", category="server", actor=Actor("cli", os_user="root"),
             scope=Scope(2, "prod-2"), created_at=at("2026-02-01T00:00")),
        dict(action="user.login_failed", category="security", actor=Actor("anonymous"),
             target_label="mallory@example.com", created_at=at("2026-02-10T08:00")),
        dict(action="domain.created", category="app", actor=DEV, scope=Scope(1, "prod-1", 7, "my app"),
             created_at=at("2026-03-01T12:00"), operation_id=2),
        dict(action="user.email_changed", category="team", actor=OPS, created_at=at("2026-03-02T12:00")),
    ])


def matching(text: str) -> set[int]:
    return set(db.session.scalars(select(AuditEntry.seq).where(*query.conditions(text))))


ALL = set(range(1, 9))


@pytest.mark.parametrize("text, expected", [
    ("actor:dev@example.com", {1, 2, 7}),  # 2: the worker on dev's behalf
    ("actor:DEV@Example.com", {1, 2, 7}),
    ("actor:worker", {2}),
    ("actor:cli", {5}),
    ("actor:root", {5}),
    ("actor:*@example.com", {1, 2, 3, 4, 7, 8}),
    ("-actor:dev@example.com", {3, 4, 5, 6, 8}),
    ("actor:dev@example.com actor:ops@example.com", {1, 2, 3, 4, 7, 8}),
])
def test_actor(log, text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("action:env_var.created", {1}),
    ("action:env_var.*", {1}),
    ("action:env_var", {1}),
    ("action:env", set()),
    ("action:*.created", {1, 4, 5, 7}),
    ("action:user.login*", {6}),
    ("-action:*.created", {2, 3, 6, 8}),
    ("action:app.created action:domain.created", {4, 7}),
])
def test_action_with_wildcards(log, text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("app:api", {1, 2}),
    ('app:"my app"', {7}),
    ("app:api app:web", {1, 2, 4}),
    ("-app:api", ALL - {1, 2}),  # entries without an app are kept
    ("server:prod-1", {1, 2, 3, 7}),
    ("server:prod-*", {1, 2, 3, 4, 5, 7}),
    ("-server:prod-1", {4, 5, 6, 8}),
    ("server:prod-1 app:api", {1, 2}),
])
def test_app_and_server_by_name(log, text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("category:security", {1, 2, 3, 6}),
    ("category:apps", {4, 7}),
    ("category:Server", {5}),
    ("category:team", {8}),
    ("-category:security", {4, 5, 7, 8}),
    ("category:app category:team", {4, 7, 8}),
])
def test_category(log, text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("outcome:applied", {1, 2}),
    ("outcome:pending", {7}),
    ("outcome:failed", {3}),
    ("-outcome:applied", ALL - {1, 2}),  # entries without an operation are not "applied"
    ("outcome:failed outcome:pending", {3, 7}),
])
def test_outcome(log, text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("created:2026-01-01", {1, 2}),
    ("created:>=2026-01-15", {3, 4, 5, 6, 7, 8}),
    ("created:>2026-01-15", {4, 5, 6, 7, 8}),
    ("created:<2026-01-15", {1, 2}),
    ("created:<=2026-01-15", {1, 2, 3}),
    ("created:2026-01-01..2026-01-31", {1, 2, 3, 4}),  # the whole last day is in the range
    ("created:2026-02-01..*", {5, 6, 7, 8}),
    ("created:*..2026-01-15", {1, 2, 3}),
    ("-created:2026-01-01..2026-01-31", {5, 6, 7, 8}),
    ("created:>=2026-01-01T10:01", {2, 3, 4, 5, 6, 7, 8}),
    ("created:2026-01-01T10:00:00Z", {1}),
    ("created:>=2026-01-01 created:<2026-02-01", {1, 2, 3, 4}),
])
def test_created_ranges_in_utc(log, text, expected):
    assert matching(text) == expected


def test_qualifiers_combine_and_negations_exclude(log):
    assert matching("actor:dev@example.com category:app") == {7}
    assert matching("category:security -actor:worker -app:api") == {3, 6}
    assert matching("server:prod-1 -outcome:applied created:>=2026-01-02") == {3, 7}
    assert matching("") == ALL


@pytest.mark.parametrize("text, token, words", [
    ("foo", "foo", "not a filter"),
    ("actor:dev@example.com foo", "foo", "not a filter"),
    ("colour:red", "colour:red", "Unknown qualifier"),
    ("category:nope", "category:nope", "security, app, server, team"),
    ("outcome:done", "outcome:done", "pending, applied or failed"),
    ("created:yesterday", "created:yesterday", "YYYY-MM-DD"),
    ("created:2026-02-30", "created:2026-02-30", "not a real date"),
    ("created:2026-01-31..2026-01-01", "created:2026-01-31..2026-01-01", "ends before it starts"),
    ("created:2026-01-01..", "created:2026-01-01..", "both ends"),
    ('app:"unterminated', 'app:"unterminated', "no closing"),
    ("app:", "app:", "no value"),
    ("-", "-", "not a filter"),
    ('app:"a"b', 'app:"a"b', "double quotes"),
])
def test_errors_name_the_bad_token(text, token, words):
    with pytest.raises(QueryError) as raised:
        query.conditions(text)
    assert raised.value.token == token
    assert repr(token) in raised.value.message or token in raised.value.message
    assert words in raised.value.message


def test_tokens_read_quotes_negation_and_case():
    terms = query.tokens('  -Actor:ops@example.com   app:"my app" created:>=2026-01-01 ')
    assert [(t.qualifier, t.value, t.negated) for t in terms] == [
        ("actor", "ops@example.com", True), ("app", "my app", False), ("created", ">=2026-01-01", False)]


def test_wildcards_do_not_turn_sql_patterns_on(log):
    # `_` and `%` are literal: only `*` is a wildcard.
    assert matching("action:env%") == set()
    assert matching("action:env_var_created") == set()


def test_chips_from_the_url_and_toggling():
    flt = Filter.from_args(MultiDict([("category", "security"), ("category", "apps"), ("category", "bogus"),
                                      ("q", " app:api ")]))
    assert flt.categories == ("security", "app") and flt.query == "app:api"
    assert flt.toggled("security") == {"q": "app:api", "category": ["app"]}
    assert flt.toggled("team") == {"q": "app:api", "category": ["security", "app", "team"]}
    assert flt.toggled(None) == {"q": "app:api"}
    assert flt.describe() == "categories Security, Apps; query app:api"


def test_pages_follow_seq_and_end(log):
    seen, before = [], None
    while True:
        page = query.page(db.session, [], before=before, size=3, )
        seen.extend(entry.seq for entry in page.entries)
        if page.older is None:
            break
        before = page.older
    # Entry 2 (operation.succeeded) is folded into entry 1, which requested the work.
    assert seen == [8, 7, 6, 5, 4, 3, 1]
