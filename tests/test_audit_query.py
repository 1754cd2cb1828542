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
        dict(action="env_var.created", category="security", actor=DEV, scope=api, target_type="env_var",
             target_label="DATABASE_URL",
             created_at=at("2026-01-01T10:00"), operation_id=1),
        dict(action="operation.succeeded", category="security", actor=DEV.on_behalf("worker"), scope=api,
             created_at=at("2026-01-01T10:01"), operation_id=1),
        dict(action="deploy_key.deleted", category="security", actor=OPS, scope=Scope(1, "prod-1"),
             target_type="deploy_key", target_label="ci-bot", created_at=at("2026-01-15T00:00"), operation_id=3),
        dict(action="app.created", category="app", actor=OPS, scope=Scope(2, "prod-2", 5, "web"),
             created_at=at("2026-01-31T23:59:59")),
        dict(action="server.created", category="server", actor=Actor("cli", os_user="root"),
             scope=Scope(2, "prod-2"), created_at=at("2026-02-01T00:00")),
        dict(action="user.login_failed", category="security", actor=Actor("anonymous"), target_type="user",
             target_label="mallory@example.com", created_at=at("2026-02-10T08:00")),
        dict(action="domain.created", category="app", actor=DEV, scope=Scope(1, "prod-1", 7, "my app"),
             target_type="domain", target_label="www.example.com", created_at=at("2026-03-01T12:00"), operation_id=2),
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


ACTOR_PREFIXES = [
    ("actor:ops", {3, 4, 8}),  # the start of an address finds it
    ("actor:OPS@", {3, 4, 8}),
    ("actor:de", {1, 2, 7}),
    ("actor:ro", {5}),  # the CLI's OS user
    ("actor:example.com", set()),  # a prefix, not anywhere in the address
    ("-actor:ops", ALL - {3, 4, 8}),
]


def test_actor_by_prefix(log):
    # One database for all the cases: each only reads the log.
    for text, expected in ACTOR_PREFIXES:
        assert matching(text) == expected, text


CHANGED = [
    ("key:DATABASE_URL", {1}),
    ("key:DATABASE_*", {1}),
    ("key:*_URL", {1}),
    ("key:database_url", set()),  # env var names are case-sensitive
    ("key:ci-bot", set()),  # a deploy key is not an env var
    ("-key:DATABASE_URL", ALL - {1}),
    ("domain:www.example.com", {7}),
    ("domain:WWW.Example.com", {7}),
    ("domain:*.example.com", {7}),
    ("domain:DATABASE_URL", set()),
    ("target:ci-bot", {3}),
    ("target:*bot", {3}),
    ("target:mallory@example.com", {6}),
    ("target:ci-bot target:DATABASE_URL", {1, 3}),
    ("-target:ci-bot", ALL - {3}),
]


def test_what_was_changed(log):
    # One database for all the cases: each only reads the log.
    for text, expected in CHANGED:
        assert matching(text) == expected, text


FREE_TEXT = [
    ("DATABASE_URL", {1}),
    ("database", {1}),  # any case, any part of a word
    ("mallory", {6}),
    ('"my app"', {7}),
    ("www.example", {7}),
    ("prod-2", {4, 5}),
    ("web", {4}),
    ("dev@example.com", {1, 2, 7}),
    ("root", {5}),
    ("ops prod-2", {4}),  # every word has to be there
    ("api ops", set()),
    ("-prod-1", ALL - {1, 2, 3, 7}),
    ("100%", set()),  # % and _ are literal
    ("ci_bot", set()),
    ("ci*bot", {3}),
]


def test_free_text_searches_the_sentence(log):
    # One database for all the cases: each only reads the log.
    for text, expected in FREE_TEXT:
        assert matching(text) == expected, text


def test_free_text_and_qualifiers_combine(log):
    assert matching("example category:security") == {1, 2, 3, 6}
    assert matching("key:DATABASE_URL app:api created:>=2026-01-01") == {1}
    assert matching("key:DATABASE_URL app:api created:>=2026-01-02") == set()


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
    ('"unterminated phrase', '"unterminated phrase', "no closing"),
    ("colour:red", "colour:red", "Unknown qualifier"),
    ("category:nope", "category:nope", "security, app, server, team"),
    ("outcome:done", "outcome:done", "pending, applied or failed"),
    ("created:yesterday", "created:yesterday", "YYYY-MM-DD"),
    ("created:2026-02-30", "created:2026-02-30", "not a real date"),
    ("created:2026-01-31..2026-01-01", "created:2026-01-31..2026-01-01", "ends before it starts"),
    ("created:2026-01-01..", "created:2026-01-01..", "both ends"),
    ('app:"unterminated', 'app:"unterminated', "no closing"),
    ("app:", "app:", "no value"),
    ("-", "-", "nothing to search for"),
    ('""', '""', "nothing to search for"),
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


def test_chips_are_category_terms_of_the_query():
    # Older links' ?category= become terms of the query, so the box shows what the chips chose.
    flt = Filter.from_args(MultiDict([("category", "security"), ("category", "apps"), ("category", "bogus"),
                                      ("q", " app:api ")]))
    assert flt.query == "category:security category:app app:api"
    assert flt.categories == ("security", "app")
    assert flt.args() == {"q": "category:security category:app app:api"}
    assert flt.toggled("security") == {"q": "category:app app:api"}
    assert flt.toggled("team") == {"q": "category:security category:app category:team app:api"}
    assert flt.toggled(None) == {"q": "app:api"}
    assert flt.describe() == "query category:security category:app app:api"


def test_chips_read_what_was_typed():
    flt = Filter(query='app:"my app" Category:Apps -category:team DATABASE')
    assert flt.categories == ("app",)  # a negated category presses no chip
    assert flt.toggled("app") == {"q": 'app:"my app" -category:team DATABASE'}
    assert flt.toggled("server") == {"q": 'app:"my app" Category:Apps -category:team category:server DATABASE'}
    assert Filter(query="category:security").toggled("security") == {}
    assert Filter(query="").toggled("team") == {"q": "category:team"}
    assert Filter(query="key:X", categories=("team",)).query == "category:team key:X"
    # While the query cannot be read, a chip still adds its term and the box keeps the text.
    broken = Filter(query='app:"open')
    assert broken.categories == () and broken.toggled("team") == {"q": 'category:team app:"open'}


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
