"""Generated values sent to every route and form field of the URL map, as each role: never a 5xx.

The routes come from the app's URL map and the fields from the forms its own pages render, so routes
and forms added later are swept without editing this file. One test per database and role, all on one
shared database; operations are queued on a Redis queue nobody consumes, so no job runs.
"""
from __future__ import annotations

import io
import re
import uuid
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, DeployKey, Domain, EnvVar, User
from tests.support import databases
from tests.support.builders import make_app, make_server, make_user
from tests.support.panel import ED25519
from tests.support.sessions import client_for as _client

ROLES = ("anonymous", "viewer", "member", "admin")
# Query parameters the timeline, print and export views read, besides the fields of GET forms.
QUERY_FIELDS = {"q", "before", "category", "view", "open", "next"}
# Values that broke routes before or sit at a boundary: ids beyond 64 bits, dates at the end of time,
# NUL bytes, options, formula starters, punycode, line breaks.
AWKWARD = [
    "", "0", "-1", "9" * 30, str(2**63), str(2**63 - 1), str(-(2**63) - 1), "1e400", "nan",
    "created:9999-12-31", "created:>=9999-12-31", "created:>9999-12-31", "created:<=9999-12-31",
    "created:2026-01-01..*", "created:9999-12-31..*", "created:*..9999-12-31", "created:0001-01-01",
    "a\x00b", "\x00", "-x", "--help", "--fingerprint", "=cmd|' /C calc'!A0", "+1", "@SUM(1)",
    "bücher.example", "a..b.com", "*.example.com", "x\r\ny", "\ud7ff\U0010ffff", " ", "a" * 300,
    'app:"x\n=1"', "outcome:failed", "category:security", "api", "API_TOKEN", "alice",
]
FIELD_VALUES = st.one_of(st.sampled_from(AWKWARD), st.text(max_size=30))
# Headers the panel stores with audit entries; a line break cannot travel in a header at all.
HEADER_VALUES = FIELD_VALUES.filter(lambda v: "\r" not in v and "\n" not in v)
PATH_INTS = st.one_of(st.integers(min_value=0, max_value=2**70), st.sampled_from([0, 2**63 - 1, 2**63, 2**64]))
PATH_TEXT = st.one_of(st.sampled_from(["api", "a\x00b", "-x", "\x00", "ü", "API_TOKEN", "a" * 300]),
                      st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", "..")))


class _Forms(HTMLParser):
    """The forms of a page: (method, action, field names)."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, str, set[str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(((attrs.get("method") or "get").upper(), attrs.get("action") or "", set()))
        elif tag in ("input", "textarea", "select", "button") and attrs.get("name") and self.forms:
            self.forms[-1][2].add(attrs["name"])


def _fill(rule, world: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: quote(str(world[m.group(1)]), safe=""), rule.rule)


def _discover(app, user, world, found: dict) -> None:
    """GET every page reachable with the world's ids; note each form's fields under its route."""
    adapter = app.url_map.bind("localhost")
    client = _client(app, user)
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static" or set(rule.arguments) - world.keys():
            continue
        response = client.get(_fill(rule, world))
        body = response.get_data(as_text=True)
        response.close()
        parser = _Forms()
        parser.feed(body)
        for method, action, fields in parser.forms:
            try:
                endpoint, _ = adapter.match(urlsplit(action).path or _fill(rule, world), method=method)
            except Exception:  # an action outside the URL map (or a 405): nothing to sweep there
                continue
            found.setdefault((endpoint, method), set()).update(fields)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, redis_url, tmp_path_factory):
    """One database for every role's sweep on this backend, with one of everything in it."""
    from intercity import create_app

    url, drop = request.getfixturevalue(f"{request.param}_template").new()
    config = databases.test_config(url)
    queue_name = f"sweep-{uuid.uuid4().hex[:8]}"
    config.update({"WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, "REDIS_URL": redis_url,
                   "JOBS_IN_PROCESS": False, "JOBS_QUEUE": queue_name})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTERCITY_INSTANCE_PATH", str(tmp_path_factory.mktemp("sweep") / "instance"))
        patch.delenv("REDIS_URL", raising=False)
        app = create_app(config)
        with app.app_context():
            fields: dict = {}
            _discover(app, None, {}, fields)  # the first-run form, before anyone exists
            users = {role: make_user(role, email=f"{role}@example.com") for role in ROLES[1:]}
            server = make_server(name="prod-1")
            app_row = make_app(server, name="api")
            var = EnvVar(app=app_row, key="API_TOKEN")
            var.value = "tok_sweep_value"
            domain = Domain(app=app_row, hostname="api.example.com")
            key = DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                            fingerprint="SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4",
                            added_by_email="admin@example.com")
            db.session.add_all([var, domain, key])
            db.session.commit()
            from intercity.services import env as env_service

            op = env_service.set_var(app_row, users["member"], key="API_TOKEN", value="tok_sweep_value2").operation
            db.session.commit()
            entry = db.session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
            world = {"server_id": server.id, "name": "api", "key": "API_TOKEN", "domain_id": domain.id,
                     "key_id": key.id, "operation_id": op.id, "entry_id": entry.id, "seq": entry.seq}
            for role in ROLES:
                _discover(app, users.get(role), world, fields)
            user_ids = {role: user.id for role, user in users.items()}
            db.session.remove()
        yield app, user_ids, world, fields
        from redis import Redis
        from rq import Queue

        Queue(queue_name, connection=Redis.from_url(redis_url)).empty()
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
    drop()


def _routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _path(rule, world: dict):
    """A strategy for the rule's URL: each argument the world's value or a generated one."""
    parts = {}
    for name, converter in rule._converters.items():
        known = st.just(world[name]) if name in world else st.nothing()
        generated = PATH_INTS if converter.__class__.__name__ == "IntegerConverter" or hasattr(converter, "max") \
            else PATH_TEXT
        parts[name] = st.one_of(known, generated)
    return st.fixed_dictionaries(parts).map(lambda values: _fill(rule, values))


@pytest.mark.parametrize("role", ROLES)
def test_no_route_answers_5xx_to_generated_input(shared, role):
    app, user_ids, world, found = shared
    with app.app_context():  # one browser for the whole sweep: it never logs out
        client = _client(app, db.session.get(User, user_ids[role]) if role in user_ids else None)
    checked = 0
    for rule, method in _routes(app):
        if rule.endpoint == "auth.logout":
            continue  # it only ends the sweep's own session
        fields = sorted(found.get((rule.endpoint, method), set()) | (QUERY_FIELDS if method == "GET" else set()))
        request = st.fixed_dictionaries({
            "url": _path(rule, world),
            "data": st.fixed_dictionaries({}, optional={name: FIELD_VALUES for name in fields}),
            "as_files": st.booleans() if method == "POST" else st.just(False),
            "htmx": st.booleans(),
            "headers": st.fixed_dictionaries({}, optional={"User-Agent": HEADER_VALUES, "X-Request-ID": HEADER_VALUES}),
        })

        @settings(max_examples=5, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(request)
        def sweep(sent):
            headers = {**sent["headers"], **({"HX-Request": "true"} if sent["htmx"] else {})}
            if method == "GET":
                kwargs = {"query_string": sent["data"]}
            elif sent["as_files"]:
                kwargs = {"data": {k: (io.BytesIO(v.encode("utf-8", "surrogatepass")), "x.txt")
                                   for k, v in sent["data"].items()}, "content_type": "multipart/form-data"}
            else:
                kwargs = {"data": sent["data"]}
            response = client.open(sent["url"], method=method, headers=headers, **kwargs)
            response.get_data()  # streamed bodies run here
            response.close()
            assert response.status_code < 500, (role, method, sent, response.status_code)

        sweep()
        checked += 1
    assert checked >= 30, "the URL map was not read"
    assert any(method == "POST" and len(fields) >= 2 for (_, method), fields in found.items()), \
        "no form fields were found on the pages"
