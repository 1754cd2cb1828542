"""Timeline pages kept between requests: a repeat renders nothing, and whatever changes the page renders it again."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from flask import g, template_rendered
from sqlalchemy import select

from intercity import clock
from intercity.audit import page_cache
from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import record_event
from intercity.blueprints.audit import REGIONS
from intercity.extensions import db
from intercity.models import AuditEntry
from intercity.web import relative_label
from tests.support.builders import PASSWORD, make_user
from tests.support.timeline_data import append_raw, finish_operation, team_history


@pytest.fixture(autouse=True)
def _jobs_wait(redis_queue):
    """Operations stay pending on a queue nobody drains, until the test finishes them as the worker would."""
    return redis_queue


@pytest.fixture
def renders(app):
    """Names of the timeline regions rendered (not taken from memory) since the list was last cleared."""
    names: list[str] = []

    def record(sender, template, context, **extra):
        if template.name in REGIONS.values():
            names.append(template.name)

    template_rendered.connect(record, app)
    yield names
    template_rendered.disconnect(record, app)


@pytest.fixture
def settled(app):
    """The team's history with every operation ended: nothing on the page is pending."""
    history = team_history()
    finish_operation(history.restart_op)
    finish_operation(history.remove_key_op)
    return history


def body(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def untokened(text: str) -> str:
    """A page without its CSRF tokens (signed with the time, so two requests' differ by the second)."""
    text = re.sub(r'(name="csrf_token" value=")[^"]*', r"\1", text)
    return re.sub(r'("X-CSRFToken": ")[^"]*', r"\1", text)


class Person:
    """A browser of its own. The test's app context outlives its requests, and Flask-Login (the signed-in user)
    and Flask-WTF (the session's CSRF token) keep what they found in `g`: each request here forgets the
    previous one's, as a server's requests do."""

    def __init__(self, client):
        self.client = client

    @staticmethod
    def _forget() -> None:
        g.pop("_login_user", None)
        g.pop("csrf_token", None)

    def get(self, url: str, **headers):
        self._forget()
        return self.client.get(url, headers=headers)

    def post(self, url: str, **kwargs):
        self._forget()
        return self.client.post(url, **kwargs)


def log_in(app, user, csrf: bool = False) -> Person:
    person = Person(app.test_client())
    data = {"email": user.email, "password": PASSWORD}
    if csrf:
        data["csrf_token"] = verify_token(person.get("/login").get_data(as_text=True))
    assert person.post("/login", data=data).status_code == 302
    return person


def verify_token(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def add_entry(label: str = "digest schedule") -> None:
    with acting_as(Actor("system")):
        record_event(db.session, "settings.changed", target_type="settings", target_label=label,
                     diff={"digest": ["weekly", "daily"]})
        db.session.commit()


def test_a_repeated_request_renders_no_rows_and_answers_the_same(app, settled, renders):
    client = log_in(app, settled.ops)
    oldest = db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).offset(3).limit(1))
    for url, headers in (("/audit", {}), ("/audit", {"HX-Request": "true"}),
                         (f"/servers/{settled.server.id}/audit?category=app", {}),
                         (f"/servers/{settled.server.id}/apps/api/audit?q=DATABASE_URL", {}),
                         (f"/audit?before={oldest}", {"HX-Request": "true", "HX-Target": "load-older"})):
        renders.clear()
        first = body(client.get(url, **headers))
        assert len(renders) == 1, url
        second = body(client.get(url, **headers))
        assert renders == [renders[0]] and untokened(second) == untokened(first), url
    assert 'id="entry-' in first


def test_a_new_entry_a_revert_and_another_scope_each_give_a_fresh_page(app, settled, renders):
    client = log_in(app, settled.ops)
    body(client.get("/audit"))
    add_entry("changed while cached")
    renders.clear()
    assert "changed while cached" in body(client.get("/audit")) and len(renders) == 1

    # A revert adds an entry and a "reverted by" link on the entry it undoes.
    changed = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "env_var.updated"))
    body(client.get("/audit"))
    [revert_seq] = append_raw([{"action": "env_var.updated", "caused_by": f"revert:{changed.seq}",
                                "target_type": "env_var", "target_label": changed.target_label}])
    page = body(client.get("/audit"))
    assert f'reverted by <a href="/audit/{revert_seq}">#{revert_seq}</a>' in page

    # Chips, the query, `before` and the scope are other pages, whatever is kept.
    everything = body(client.get("/audit"))
    security = body(client.get("/audit?category=security"))
    assert "mallory@example.com" in security and "api.example.com" not in security
    assert "api.example.com" in everything
    found = body(client.get("/audit?q=mallory"))
    assert "mallory@example.com" in found and "digest" not in found.split('id="timeline-entries"')[1]
    newest = db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    older = body(client.get(f"/audit?before={newest}"))
    assert f'id="entry-{newest}"' in everything and f'id="entry-{newest}"' not in older
    app_page = body(client.get(f"/servers/{settled.server.id}/apps/api/audit"))
    assert "mallory@example.com" not in app_page and "mallory@example.com" in everything
    other_app = body(client.get(f"/servers/{settled.server.id}/apps/web/audit"))
    assert 'id="entry-' in app_page and 'id="entry-' not in other_app


def test_an_unreadable_filter_is_answered_afresh_every_time(app, settled, renders):
    client = log_in(app, settled.ops)
    for headers in ({}, {"HX-Request": "true"}, {"HX-Request": "true", "HX-Target": "load-older"}):
        renders.clear()
        for _ in range(2):
            response = client.get("/audit?q=colour:red&before=5", **headers)
            assert response.status_code == (200 if "HX-Target" in headers else 422)
        assert len(renders) == 2, headers


def test_htmx_regions_and_the_full_page_are_kept_apart(app, settled, renders):
    client = log_in(app, settled.ops)
    region = body(client.get("/audit", **{"HX-Request": "true"}))
    full = body(client.get("/audit"))
    assert region.lstrip().startswith('<div id="timeline">') and "<html" in full and "<html" not in region
    seq = db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).offset(2).limit(1))
    appended = body(client.get(f"/audit?before={seq}", **{"HX-Request": "true", "HX-Target": "load-older"}))
    listed = body(client.get(f"/audit?before={seq}", **{"HX-Request": "true"}))
    assert appended.lstrip().startswith("<li") and listed.lstrip().startswith('<div id="timeline">')
    restored = body(client.get("/audit", **{"HX-Request": "true", "HX-History-Restore-Request": "true"}))
    assert "<html" in restored


def test_each_role_gets_its_own_page(app, settled, renders):
    admin = log_in(app, settled.ops)
    viewer = log_in(app, settled.viewer)
    member = log_in(app, settled.dev)
    admin_page = body(admin.get("/audit"))
    viewer_page = body(viewer.get("/audit"))
    member_page = body(member.get("/audit"))
    assert "Verify chain" in admin_page and "Verify chain" not in viewer_page + member_page
    assert "Revert…" in admin_page and "Revert…" in member_page and "Revert…" not in viewer_page
    # Deploy keys are the admin's to revert: the member's page links fewer reverts.
    assert admin_page.count("Revert…") > member_page.count("Revert…")
    assert len(renders) == 3
    assert '<span class="role">viewer</span>' in viewer_page and '<span class="role">admin</span>' in admin_page


def test_a_page_with_a_pending_row_is_rendered_every_time_until_the_outcome(app, renders):
    history = team_history()
    finish_operation(history.remove_key_op)
    client = log_in(app, history.dev)
    restart = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    for _ in range(2):
        page = body(client.get("/audit"))
        assert "outcome-pending" in re.search(rf'<li class="[^"]*" id="entry-{restart.seq}"', page).group(0)
    assert len(renders) == 2
    finish_operation(history.restart_op, runs=[{"argv": ["dokku", "ps:restart", "api"], "stdout": "Restarting"}])
    renders.clear()
    first = body(client.get("/audit"))
    row = re.search(rf'<li class="[^"]*" id="entry-{restart.seq}"', first).group(0)
    assert "outcome-applied" in row and "dokku ps:restart api" in first
    body(client.get("/audit"))
    assert len(renders) == 1  # ended: now it is kept


def test_a_pending_row_without_an_outcome_entry_shows_its_end(app, renders):
    """A read (a connection test) that works ends with no entry: its row must not be kept while pending."""
    from intercity.models import Operation
    from intercity.services.operations import request_operation

    history = team_history()
    finish_operation(history.restart_op)
    finish_operation(history.remove_key_op)
    with acting_as(Actor.for_user(history.ops)):
        op = request_operation("server.check", server=history.server)
        db.session.commit()
    client = log_in(app, history.ops)
    assert "outcome-pending" in body(client.get("/audit"))
    db.session.get(Operation, op.id).status = "succeeded"
    db.session.commit()
    renders.clear()
    page = body(client.get("/audit"))
    assert "outcome-pending" not in page and len(renders) == 1


def test_relative_times_and_day_headers_are_never_kept_past_their_change(app, settled, renders, monkeypatch):
    client = log_in(app, settled.ops)
    add_entry("the newest")
    newest = db.session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    start = newest.created_at.replace(tzinfo=timezone.utc).timestamp() if newest.created_at.tzinfo is None \
        else newest.created_at.timestamp()

    def row(page: str) -> str:
        return re.search(rf'id="entry-{newest.seq}".*?</time>', page, re.S).group(0)

    monkeypatch.setattr(clock, "now", lambda: start + 10)
    assert ">just now</time>" in row(body(client.get("/audit")))
    monkeypatch.setattr(clock, "now", lambda: start + 59)
    assert ">just now</time>" in row(body(client.get("/audit"))) and len(renders) == 1  # kept: still true
    monkeypatch.setattr(clock, "now", lambda: start + 61)
    assert ">1 minute ago</time>" in row(body(client.get("/audit"))) and len(renders) == 2
    monkeypatch.setattr(clock, "now", lambda: start + 3 * 3600 + 5)
    assert ">3 hours ago</time>" in row(body(client.get("/audit")))
    # Past midnight, "Today" is yesterday (the label of the newest day).
    midnight = page_cache.next_midnight(datetime.fromtimestamp(start, timezone.utc))
    monkeypatch.setattr(clock, "now", lambda: midnight.timestamp() - 1)
    assert "<h2>Today</h2>" in body(client.get("/audit"))
    monkeypatch.setattr(clock, "now", lambda: midnight.timestamp() + 1)
    assert "<h2>Yesterday</h2>" in body(client.get("/audit"))


def test_a_relative_label_changes_exactly_when_its_helper_says():
    from intercity.web import _UNITS

    value = datetime(2026, 1, 1, tzinfo=timezone.utc)
    offsets = [0, 1, 44, 45, 59, 60, 61, 119, 120, 3599, 3600, 7199, 86399, 86400, 86400 * 29 + 5, 86400 * 30,
               86400 * 359, 86400 * 360, 86400 * 364, 86400 * 365, 86400 * 800, -5]
    assert _UNITS[0][1] == "year"
    for offset in offsets:
        now = value + timedelta(seconds=offset)
        label, changes_at = relative_label(value, now)
        assert changes_at > now, offset
        assert relative_label(value, changes_at - timedelta(microseconds=1))[0] == label, offset
        assert relative_label(value, changes_at)[0] != label, offset
    assert relative_label(value, value + timedelta(days=364))[0] == "12 months ago"
    assert relative_label(value, value + timedelta(days=364))[1] == value + timedelta(days=365)


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True


def test_each_session_gets_its_own_csrf_token_in_a_kept_page(csrf_on, app, renders):
    first, second = make_user("admin", email="one@example.com"), make_user("admin", email="two@example.com")
    one, two = log_in(app, first, csrf=True), log_in(app, second, csrf=True)
    page_one, page_two = body(one.get("/audit")), body(two.get("/audit"))
    assert len(renders) == 1  # the second admin's main region came from memory
    token_one = re.search(r'action="/audit/verify"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)"',
                          page_one).group(1)
    token_two = re.search(r'action="/audit/verify"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)"',
                          page_two).group(1)
    assert "csrf-token--" not in page_one + page_two
    assert two.post("/audit/verify", data={"csrf_token": token_one}).status_code == 400  # not its session's
    assert one.post("/audit/verify", data={"csrf_token": token_one}).status_code == 302
    assert two.post("/audit/verify", data={"csrf_token": token_two}).status_code == 302


@pytest.fixture
def cache_off(app_config):
    app_config["TIMELINE_CACHE"] = 0


def test_the_setting_turns_it_off(cache_off, app, settled, renders):
    client = log_in(app, settled.ops)
    for _ in range(3):
        body(client.get("/audit"))
    assert len(renders) == 3 and app.extensions[page_cache.EXTENSION] is None


def test_the_cache_is_bounded_by_entries_and_size():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = now + timedelta(hours=1)
    cache = page_cache.PageCache(entries=2, max_bytes=10)
    cache.put(("a",), "aaa", later)
    cache.put(("b",), "bbb", later)
    assert cache.get(("a",), now) == "aaa"  # a is now the most recent
    cache.put(("c",), "ccc", later)
    assert cache.get(("b",), now) is None and cache.get(("a",), now) == "aaa" and len(cache) == 2
    cache.put(("d",), "dddddddd", later)  # 3 + 8 > 10 characters: the oldest goes
    assert cache.get(("c",), now) is None and cache.get(("a",), now) is None and cache.get(("d",), now)
    cache.put(("e",), "e" * 11, later)  # larger than the whole cache: not kept
    assert cache.get(("e",), now) is None
    assert cache.get(("d",), later) is None and len(cache) == 0  # its labels changed
