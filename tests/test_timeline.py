"""The audit timeline: sentences, chips, paging, permalinks, live outcomes, print, export, verification."""
from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import render_template_string
from sqlalchemy import func, inspect, select, text

from intercity.audit import chain, integrity, query, timeline
from intercity.audit.actor import Actor, acting_as
from intercity.audit.rules import CATEGORIES, Scope
from intercity.extensions import db
from intercity.models import App, AuditCheckpoint, AuditEntry, Operation, Server
from intercity.models.base import utcnow
from tests.support.timeline_data import SECRETS, append_raw, finish_operation, team_history


@pytest.fixture(autouse=True)
def _jobs_wait(redis_queue):
    """Operations go to a Redis queue of the test's own that no worker drains: they stay pending until
    the test finishes them as the worker would."""
    return redis_queue


@pytest.fixture
def history(app):
    return team_history()


def plain(body: str) -> str:
    body = re.sub(r"<svg.*?</svg>", "", body, flags=re.S)
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def entry_ids(body: str) -> list[int]:
    return [int(n) for n in re.findall(r'id="entry-(\d+)"', body)]


def visible_ids(*conditions) -> list[int]:
    return list(db.session.scalars(query.entries_statement(list(conditions), limit=None)
                                   .with_only_columns(AuditEntry.seq)))


def get(client, url: str, htmx: bool = False, **headers):
    if htmx:
        headers["HX-Request"] = "true"
    response = client.get(url, headers=headers)
    return response, response.get_data(as_text=True)


# -- sentences -------------------------------------------------------------------------------------

def test_entries_read_as_sentences_a_person_would_write(client, logged_in, history):
    refresh = Operation(kind="app.refresh", category="app", server_id=history.server.id, server_name="prod-1",
                        app_id=history.app.id, app_name="api", scope=f"app:{history.app.id}", payload="{}",
                        requested_by_id=history.dev.id, requested_by_email="dev@example.com",
                        requested_by_role="member", status="queued")
    db.session.add(refresh)
    db.session.commit()
    finish_operation(refresh)
    logged_in(history.ops)
    response, body = get(client, "/audit")
    assert response.status_code == 200
    words = plain(body)
    for sentence in (
        "ops@example.com added server prod-1 (root@10.0.0.5:22)",
        "ops@example.com added deploy key ci-bot to prod-1",
        "dev@example.com created app api on prod-1",
        "dev@example.com set DATABASE_URL on api (prod-1)",
        "dev@example.com set API_TOKEN on api (prod-1)",
        "dev@example.com changed DATABASE_URL on api (prod-1)",
        "dev@example.com added domain api.example.com to api (prod-1)",
        "dev@example.com restarted api on prod-1",
        "ops@example.com removed deploy key ci-bot from prod-1",
        "Someone failed to log in as mallory@example.com",
        "ops@example.com logged in",
        # an outcome with no request of its own stands alone, named for whom the worker acted
        "worker on behalf of dev@example.com ran “refresh the app's status” on api (prod-1)",
    ):
        assert sentence in words, sentence
    # Day header, exact time on hover, category icons.
    assert "Today" in words
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', body)
    assert body.count("<svg") >= 10


def _entry(action, category="security", **fields):
    defaults = dict(seq=1, created_at=datetime(2026, 1, 2, tzinfo=timezone.utc), actor_kind="user",
                    actor_email="ops@example.com", diff="{}", server_name="prod-1", server_id=1)
    defaults.update(fields)
    return AuditEntry(action=action, category=category, **defaults)


@pytest.mark.parametrize("entry, expected", [
    (_entry("server.host_key_pinned", actor_kind="worker", actor_email="dev@example.com", target_label="prod-1",
            diff='{"host_key_fingerprint":[null,"SHA256:abc"]}'),
     "worker on behalf of dev@example.com pinned the host key of prod-1 as SHA256:abc"),
    (_entry("server.host_key_accepted", target_label="prod-1", diff='{"host_key_fingerprint":["SHA256:a","SHA256:b"]}'),
     "ops@example.com accepted a new host key for prod-1: SHA256:b"),
    (_entry("server.host_key_mismatch", actor_kind="worker", actor_email="dev@example.com",
            diff='{"seen_host_key_fingerprint":[null,"SHA256:evil"]}'),
     "worker on behalf of dev@example.com found an unexpected host key on prod-1 (SHA256:evil); work on it is stopped"),
    (_entry("server.key_regenerated", target_label="prod-1"), "ops@example.com regenerated the panel's SSH key for prod-1"),
    (_entry("server.connection_test_requested", "server"), "ops@example.com tested the connection to prod-1"),
    (_entry("server.import_requested", "app"), "ops@example.com imported apps from prod-1"),
    (_entry("server.deleted", "server", target_label="prod-1"),
     "ops@example.com removed server prod-1 from the panel (the server itself is untouched)"),
    (_entry("server.updated", "server", target_label="prod-1", diff='{"host":["a","b"]}'),
     "ops@example.com changed host of server prod-1"),
    (_entry("app.destroy_requested", "app", app_name="api"), "ops@example.com destroyed app api on prod-1"),
    (_entry("app.created", "app", app_name="api", target_label="api", diff='{"imported":[null,true]}'),
     "ops@example.com imported app api from prod-1"),
    (_entry("app.deleted", "app", app_name="api", target_label="api", caused_by="server:1"),
     "ops@example.com removed app api from prod-1, with its server"),
    (_entry("env_var.revealed", app_name="api", target_type="env_var", target_label="SECRET_KEY"),
     "ops@example.com revealed the value of SECRET_KEY on api (prod-1)"),
    (_entry("env_var.deleted", app_name="api", target_type="env_var", target_label="OLD"),
     "ops@example.com removed OLD from api (prod-1)"),
    (_entry("domain.deleted", "app", app_name="api", target_label="old.example.com"),
     "ops@example.com removed domain old.example.com from api (prod-1)"),
    (_entry("deploy_key.created", target_label="laptop", diff='{"adopted":[null,true]}'),
     "ops@example.com adopted deploy key laptop found on prod-1"),
    (_entry("operation.retry_requested", "app", app_name="api", target_label="restart the app (api)"),
     "ops@example.com retried “restart the app” on api (prod-1)"),
    (_entry("user.created", server_name=None, target_label="new@example.com", diff='{"role":[null,"viewer"]}'),
     "ops@example.com added new@example.com as viewer"),
    (_entry("user.updated", server_name=None, target_label="dev@example.com", diff='{"role":["member","admin"]}'),
     "ops@example.com changed the role of dev@example.com from member to admin"),
    (_entry("user.updated", server_name=None, target_label="dev@example.com", diff='{"active":[true,false]}'),
     "ops@example.com deactivated dev@example.com"),
    (_entry("user.deleted", server_name=None, target_label="old@example.com"), "ops@example.com removed user old@example.com"),
    (_entry("user.logout", server_name=None), "ops@example.com logged out"),
    (_entry("audit.exported", server_name=None, diff='{"format":[null,"csv"],"filter":[null,"query app:api"]}'),
     "ops@example.com exported the audit log as CSV (filtered: query app:api)"),
    (_entry("audit.verified", server_name=None, diff='{"checked":[null,12],"head_seq":[null,40]}'),
     "ops@example.com verified the audit chain: intact up to entry 40 (12 new entries checked)"),
    (_entry("audit.verify_failed", server_name=None, diff='{"problem":[null,"entry 7 was altered"]}'),
     "ops@example.com verified the audit chain and found it broken: entry 7 was altered"),
    (_entry("user.login", actor_kind="cli", actor_email=None, actor_os_user="root", server_name=None),
     "cli (root) logged in"),
    (_entry("invitation.created", "team", server_name=None, target_label="new@example.com"),
     "ops@example.com created invitation new@example.com"),
    (_entry("user.invited", server_name=None, target_label="new@example.com", diff='{"role":[null,"member"]}'),
     "ops@example.com invited new@example.com as member"),
    (_entry("invitation.accepted", "team", actor_email="new@example.com", server_name=None,
            target_label="new@example.com"), "new@example.com accepted the invitation for new@example.com"),
    (_entry("invitation.revoked", server_name=None, target_label="new@example.com"),
     "ops@example.com withdrew the invitation for new@example.com"),
    (_entry("user.role_changed", server_name=None, target_label="dev@example.com", diff='{"role":["admin","viewer"]}'),
     "ops@example.com changed the role of dev@example.com from admin to viewer"),
    (_entry("user.deactivated", server_name=None, target_label="dev@example.com", diff='{"active":[true,false]}'),
     "ops@example.com deactivated dev@example.com"),
    (_entry("user.reactivated", server_name=None, target_label="dev@example.com", diff='{"active":[false,true]}'),
     "ops@example.com reactivated dev@example.com"),
    (_entry("user.email_changed", "team", server_name=None, target_label="dev@new.example.com",
            diff='{"email":["dev@example.com","dev@new.example.com"]}'),
     "ops@example.com changed the email of dev@example.com to dev@new.example.com"),
    (_entry("user.password_changed", server_name=None, target_label="dev@example.com",
            diff='{"password_hash":["[redacted]","[redacted]"]}'), "ops@example.com changed the password of dev@example.com"),
    (_entry("user.login_failed", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="an unknown address"), "Someone failed to log in as an unknown address"),
    (_entry("user.login_failures_repeated", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="dev@example.com", diff='{"failures":[null,5],"minutes":[null,15]}'),
     "Someone failed to log in 5 times within 15 minutes as dev@example.com"),
    (_entry("user.session_ended", server_name=None, target_label="ops@example.com",
            diff='{"device":[null,"Firefox on Linux"],"ip":[null,"192.0.2.1"]}'),
     "ops@example.com ended a session of ops@example.com (Firefox on Linux)"),
    (_entry("user.2fa_enabled", server_name=None, target_label="ops@example.com"),
     "ops@example.com turned on two-factor login for ops@example.com"),
    (_entry("user.2fa_disabled", server_name=None, target_label="ops@example.com"),
     "ops@example.com turned off two-factor login for ops@example.com"),
    (_entry("user.2fa_reset", server_name=None, target_label="dev@example.com"),
     "ops@example.com reset the two-factor login of dev@example.com"),
    (_entry("user.2fa_failed", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="dev@example.com"), "Someone typed a wrong two-factor code for dev@example.com"),
    (_entry("user.recovery_code_used", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="dev@example.com", diff='{"left":[null,9]}'),
     "Someone used a recovery code of dev@example.com (9 left)"),
    (_entry("user.recovery_codes_regenerated", server_name=None, target_label="dev@example.com"),
     "ops@example.com made new recovery codes for dev@example.com"),
    (_entry("user.password_reset_requested", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="an unknown address"), "Someone asked for a password reset link for an unknown address"),
    (_entry("user.password_reset", actor_kind="anonymous", actor_email=None, server_name=None,
            target_label="dev@example.com", diff='{"password_hash":["[redacted]","[redacted]"]}'),
     "Someone reset the password of dev@example.com from a mailed link"),
    (_entry("settings.changed", server_name=None, target_label="require_2fa", diff='{"value":[null,"on"]}'),
     "ops@example.com required two-factor login for everyone"),
])
def test_every_action_has_a_sentence(app, entry, expected):
    assert str(timeline.sentence(entry)) == expected


def test_outcomes_fold_into_the_entry_that_asked_for_the_work(client, logged_in, history):
    logged_in(history.viewer)
    _, body = get(client, "/audit")
    shown = set(entry_ids(body))
    outcome_ids = set(db.session.scalars(select(AuditEntry.seq).where(AuditEntry.action.in_(query.OUTCOME_ACTIONS))))
    assert outcome_ids and not (outcome_ids & shown)
    rows = {row.entry.action + ":" + (row.entry.target_label or ""): row
            for row in timeline.rows(db.session.scalars(select(AuditEntry)).all())}
    created = rows["app.created:api"]
    assert created.outcome == "applied" and [r.command for r in created.runs] == ["dokku apps:create api"]
    domain = rows["domain.created:api.example.com"]
    assert domain.outcome == "failed" and domain.reason == "domains:add exited with 1"
    assert domain.runs[0].exit_code == 1 and "Invalid domain" in domain.runs[0].stderr
    assert rows["app.restart_requested:restart the app (api)"].outcome == "pending"
    # The expanded details on the page: diff with the value's fingerprint, commands, exit codes, output.
    words = plain(body)
    assert "$ dokku domains:add api api.example.com exit 1" in words
    assert "Why it failed: domains:add exited with 1" in words
    assert "dokku config:set --encoded api 'DATABASE_URL=[redacted]' 'API_TOKEN=[redacted]' exit 0" in words
    assert re.search(r"value — changed · fingerprint [0-9a-f]{8,}", words)
    assert re.search(r"value changed · fingerprint [0-9a-f]{8,} changed · fingerprint [0-9a-f]{8,}", words)


# -- chips and the query box -----------------------------------------------------------------------

@pytest.mark.parametrize("chosen", [(c,) for c in CATEGORIES] + [("security", "app"), ("server", "team"),
                                                                 ("security", "app", "server", "team")])
def test_each_chip_and_combination(client, logged_in, history, chosen):
    logged_in(history.ops)
    typed = " ".join(f"category:{c}" for c in chosen)
    response, body = get(client, "/audit?" + urlencode({"q": typed}))
    assert response.status_code == 200
    # Every chip matches something the team did (Team: the accounts created).
    expected = visible_ids(AuditEntry.category.in_(chosen))
    assert expected and entry_ids(body) == expected
    for category in CATEGORIES:
        pressed = re.search(rf'aria-pressed="(true|false)" data-category="{category}"', body).group(1)
        assert pressed == ("true" if category in chosen else "false")
    # The box shows what the chips chose; pressing a chip again takes its term out; "All" takes them all.
    assert f'value="{typed}"' in body
    chip = re.search(rf'href="([^"]+)" aria-pressed="true" data-category="{chosen[0]}"', body).group(1)
    released = " ".join(f"category:{c}" for c in chosen[1:])
    assert parse_qs(urlsplit(html.unescape(chip)).query).get("q", [""]) == [released]
    assert re.search(r'<a class="chip" href="/audit" aria-pressed="false">All</a>', body)


def test_a_chip_adds_its_term_to_the_query_and_old_links_still_work(client, logged_in, history):
    logged_in(history.ops)
    _, body = get(client, "/audit?q=app:api")
    chip = html.unescape(re.search(r'href="([^"]+)" aria-pressed="false" data-category="security"', body).group(1))
    assert parse_qs(urlsplit(chip).query) == {"q": ["category:security app:api"]}
    _, pressed = get(client, chip)
    assert entry_ids(pressed) == visible_ids(AuditEntry.category == "security", AuditEntry.app_name == "api")
    assert 'value="category:security app:api"' in pressed
    # A link from before the chips were query terms shows the same view, its chips now in the box.
    _, old = get(client, "/audit?category=security&q=app:api")
    assert entry_ids(old) == entry_ids(pressed) and 'value="category:security app:api"' in old
    assert 'name="category"' not in old  # the form sends the box alone


def test_who_changed_a_key_on_an_app_last_month_is_one_query(client, logged_in, history):
    logged_in(history.viewer)
    since = (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat()
    response, body = get(client, "/audit?" + urlencode({"q": f"key:DATABASE_URL app:api created:>={since}"}))
    assert response.status_code == 200
    expected = visible_ids(AuditEntry.target_type == "env_var", AuditEntry.target_label == "DATABASE_URL",
                           AuditEntry.app_name == "api")
    assert len(expected) == 2 and entry_ids(body) == expected
    words = plain(body)
    assert "dev@example.com set DATABASE_URL on api (prod-1)" in words
    assert "dev@example.com changed DATABASE_URL on api (prod-1)" in words
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    _, later = get(client, "/audit?" + urlencode({"q": f"key:DATABASE_URL app:api created:>={tomorrow}"}))
    assert entry_ids(later) == []


def test_a_bare_word_searches_who_what_and_where(client, logged_in, history):
    logged_in(history.viewer)
    response, body = get(client, "/audit?q=api_token")
    assert response.status_code == 200
    assert entry_ids(body) == visible_ids(AuditEntry.target_label == "API_TOKEN")
    _, body = get(client, "/audit?" + urlencode({"q": '"mallory@example" actor:anon'}))
    assert entry_ids(body) == [] and "No entries match this filter." in plain(body)
    _, body = get(client, "/audit?" + urlencode({"q": "mallory"}))
    assert "Someone failed to log in as mallory@example.com" in plain(body)
    assert "A word or a" in plain(body)  # the help line says so


def test_chips_combine_with_the_query_box(client, logged_in, history):
    logged_in(history.ops)
    _, body = get(client, "/audit?category=security&q=actor:ops@example.com")
    expected = visible_ids(AuditEntry.category == "security", AuditEntry.actor_email == "ops@example.com")
    assert entry_ids(body) == expected and len(expected) >= 2  # (logging in is a team event)
    _, body = get(client, "/audit?q=-category:security+app:api")
    assert entry_ids(body) == visible_ids(AuditEntry.category != "security", AuditEntry.app_name == "api")
    # actor: also finds the work done on the person's behalf
    _, body = get(client, "/audit?q=actor:dev@example.com+outcome:failed")
    assert "dev@example.com added domain api.example.com to api (prod-1)" in plain(body)


def test_htmx_gets_the_region_and_a_plain_request_the_same_page(client, logged_in, history):
    logged_in(history.ops)
    full, full_body = get(client, "/audit?category=app")
    part, part_body = get(client, "/audit?category=app", htmx=True, **{"HX-Target": "timeline"})
    assert "<html" in full_body and "<html" not in part_body
    assert part_body.lstrip().startswith('<div id="timeline">')
    assert entry_ids(full_body) == entry_ids(part_body)
    assert "HX-Request" in part.headers["Vary"] and "HX-Request" in full.headers["Vary"]
    # Filters push the URL, so a filtered view can be bookmarked; a history restore gets the whole page.
    assert 'hx-push-url="true"' in part_body
    _, restored = get(client, "/audit?category=app", htmx=True, **{"HX-History-Restore-Request": "true"})
    assert "<html" in restored


@pytest.mark.parametrize("htmx", [False, True])
def test_an_invalid_query_says_what_is_wrong_and_shows_nothing(client, logged_in, history, htmx):
    logged_in(history.ops)
    response, body = get(client, "/audit?q=app:api+colour:red", htmx=htmx)
    assert response.status_code == 422
    assert entry_ids(body) == []
    assert "Unknown qualifier 'colour:' in 'colour:red'" in plain(body)
    assert 'value="app:api colour:red"' in body  # kept for fixing
    response, body = get(client, "/audit/print?q=created:soon")
    assert response.status_code == 422 and "print-entry" not in body and "created:soon" in body
    response = client.get("/audit/export.csv?q=nonsense:1")
    assert response.status_code == 422 and "Unknown qualifier 'nonsense:'" in response.get_data(as_text=True)


# -- paging ---------------------------------------------------------------------------------------

def _same_moment_entries(count: int) -> None:
    moment = datetime.now(timezone.utc)  # one timestamp for all of them
    api = Scope(1, "prod-1", 1, "api")
    append_raw([dict(action="domain.created" if n % 3 else "env_var.created", category="app" if n % 3 else "security",
                     scope=api, target_label=f"h{n}.example.com", created_at=moment) for n in range(count)])


@pytest.mark.parametrize("params", ["", "category=app", "q=app:api"])
def test_keyset_pages_have_no_duplicates_or_gaps_with_equal_timestamps(client, logged_in, member, params):
    _same_moment_entries(3 * query.PAGE_SIZE + 7)
    logged_in(member)
    url, seen, pages = f"/audit?{params}", [], 0
    while url:
        _, body = get(client, url)
        ids = entry_ids(body)
        assert len(ids) <= query.PAGE_SIZE
        seen.extend(ids)
        pages += 1
        more = re.search(r'<a class="button" href="([^"]+)"[^>]*>Load older</a>', body)
        url = html.unescape(more.group(1)) if more else None
    conditions = query.Filter.from_args(_args(params)).conditions()
    expected = visible_ids(*conditions)
    assert len(seen) == len(set(seen)) and seen == expected
    assert pages == -(-len(expected) // query.PAGE_SIZE)


def _args(params: str):
    from werkzeug.datastructures import MultiDict
    from urllib.parse import parse_qsl

    return MultiDict(parse_qsl(params))


def test_load_older_appends_rows_without_repeating_the_day(client, logged_in, member):
    _same_moment_entries(query.PAGE_SIZE + 5)
    logged_in(member)
    _, first = get(client, "/audit")
    older = html.unescape(re.search(r'id="load-older">\s*<a class="button" href="([^"]+)"', first).group(1))
    assert "before=" in older
    response, more = get(client, older, htmx=True, **{"HX-Target": "load-older"})
    assert response.status_code == 200
    assert more.lstrip().startswith('<li class="tl-entry')  # rows only, continuing the same day
    assert "tl-day" not in more and "<html" not in more
    assert len(entry_ids(first)) == query.PAGE_SIZE
    assert set(entry_ids(more)).isdisjoint(entry_ids(first))
    # Without htmx the same link is a page of its own, with a way back to the newest.
    _, page_two = get(client, older)
    assert entry_ids(page_two) == entry_ids(more) and "Back to the newest entries" in page_two


# -- permalinks and live outcomes -------------------------------------------------------------------

def test_each_entry_has_a_permalink(client, logged_in, history):
    logged_in(history.viewer)
    target = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "env_var.created"))
    response, body = get(client, f"/audit/{target.seq}")
    assert response.status_code == 200
    words = plain(body)
    assert "dev@example.com set" in words and target.hash in body and target.prev_hash in body
    assert "<details class=\"tl-details\" open>" in body
    _, page = get(client, "/audit")
    assert f'href="/audit/{target.seq}"' in page
    assert client.get("/audit/999999").status_code == 404


def test_a_pending_entry_updates_itself_until_its_operation_ends(client, logged_in, history):
    logged_in(history.dev)
    restart = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    _, page = get(client, "/audit")
    row = re.search(rf'<li class="tl-entry[^"]*" id="entry-{restart.seq}"[^>]*>', page).group(0)
    assert f'hx-get="/audit/{restart.seq}"' in row and 'hx-trigger="every 2s"' in row and "outcome-pending" in row

    response, polled = get(client, f"/audit/{restart.seq}", htmx=True)
    assert response.status_code == 200 and polled.lstrip().startswith("<li")
    assert 'hx-trigger="every 2s"' in polled and ">pending<" in polled.replace('<span class="spinner" aria-hidden="true"></span>', "")
    assert "<details" in polled and " open>" not in polled
    _, kept_open = get(client, f"/audit/{restart.seq}?open=1", htmx=True)  # the row's details were open
    assert '<details class="tl-details" open>' in kept_open and 'hx-trigger="every 2s"' in kept_open

    finish_operation(history.restart_op, runs=[{"argv": ["dokku", "ps:restart", "api"], "stdout": "Restarting api"}])
    _, final = get(client, f"/audit/{restart.seq}", htmx=True)
    assert "hx-trigger" not in final and "hx-get" not in final
    assert ">applied<" in final and "dokku ps:restart api" in final and "exit 0" in final
    _, final_open = get(client, f"/audit/{restart.seq}?open=1", htmx=True)
    assert '<details class="tl-details" open>' in final_open and "hx-trigger" not in final_open

    # The recent-activity fragment polls the same way, in its own compact form.
    _, recent = get(client, f"/audit/{restart.seq}?view=recent", htmx=True)
    assert recent.lstrip().startswith('<li class="recent-entry') and "hx-trigger" not in recent


# -- scopes ---------------------------------------------------------------------------------------

def test_app_timeline_includes_an_older_app_of_the_same_name_and_survives_removal(client, logged_in, history):
    server_id = history.server.id
    with acting_as(Actor.for_user(history.ops)):
        other = App(server=history.server, name="web")
        db.session.add(other)
        db.session.commit()
        db.session.delete(history.app)  # gone: its env vars and domains go with it
        db.session.commit()
        again = App(server=history.server, name="api")
        db.session.add(again)
        db.session.commit()
    logged_in(history.viewer)
    _, body = get(client, f"/servers/{server_id}/apps/api/audit")
    words = plain(body)
    assert "dev@example.com set DATABASE_URL on api (prod-1)" in words  # the first api
    assert "ops@example.com removed app api from prod-1" in words
    assert "ops@example.com created app api on prod-1" in words  # the second
    assert "created app web" not in words
    assert entry_ids(body) == visible_ids(AuditEntry.server_name == "prod-1", AuditEntry.app_name == "api")

    with acting_as(Actor.for_user(history.ops)):
        db.session.delete(db.session.get(Server, server_id))
        db.session.commit()
    response, body = get(client, f"/servers/{server_id}/audit")
    assert response.status_code == 200
    assert "removed server prod-1 from the panel" in plain(body)
    assert "This server was removed from the panel" in plain(body)
    assert entry_ids(body) == visible_ids(AuditEntry.server_id == server_id)[:query.PAGE_SIZE]
    response, body = get(client, f"/servers/{server_id}/apps/api/audit")
    assert response.status_code == 200 and "dev@example.com set DATABASE_URL on api (prod-1)" in plain(body)
    assert client.get("/servers/4242/audit").status_code == 404


def test_recent_fragment_for_server_and_app_pages(client, logged_in, history):
    rows = timeline.recent(server_id=history.server.id, app_name="api", limit=4)
    assert len(rows) == 4 and [r.entry.seq for r in rows] == sorted((r.entry.seq for r in rows), reverse=True)
    assert all(r.entry.app_name == "api" for r in rows)
    with client.application.test_request_context("/"):
        body = render_template_string(
            '{% with timeline_server_id=sid, timeline_app_name="api" %}{% include "audit/_recent.html" %}{% endwith %}',
            sid=history.server.id)
        server_body = render_template_string(
            '{% with timeline_server_id=sid %}{% include "audit/_recent.html" %}{% endwith %}', sid=history.server.id)
    words = plain(body)
    assert 'id="recent-activity"' in body
    assert "dev@example.com restarted api on prod-1 pending just now" in words
    assert f'hx-get="/audit/{rows[0].seq}?view=recent"' in body
    assert "dev@example.com added domain api.example.com to api (prod-1) failed" in words
    assert f'href="/servers/{history.server.id}/apps/api/audit"' in body
    assert "ops@example.com removed deploy key ci-bot from prod-1 pending" in plain(server_body)
    assert f'href="/servers/{history.server.id}/audit"' in server_body


# -- print ----------------------------------------------------------------------------------------

def test_print_of_an_app_has_every_entry_a_header_and_the_chain_footer(client, logged_in, history):
    _same_moment_entries(2 * query.PAGE_SIZE)  # more than one page
    logged_in(history.viewer)
    response = client.get(f"/servers/{history.server.id}/apps/api/audit/print")
    assert response.status_code == 200 and response.is_streamed
    body = response.get_data(as_text=True)
    expected = visible_ids(AuditEntry.server_name == "prod-1", AuditEntry.app_name == "api")
    assert body.count('<li class="print-entry') == len(expected) > query.PAGE_SIZE
    words = plain(body)
    assert "App api on server prod-1" in words and "Filter none (every entry)" in words
    assert f"{len(expected)} entries, oldest first" in words
    assert "<nav" not in body and "print.css" in body and "Log out" not in words
    head_seq, head_hash = chain.head(db.session.connection())
    assert f"Chain head: {head_seq}:{head_hash}" in words
    assert f"Verification: intact: {head_seq} entries verified up to entry {head_seq}" in words
    # A GET stores nothing: checkpoints come from "Verify chain" and `intercity audit verify`.
    assert db.session.scalar(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq.desc()).limit(1)) is None

    # Once "Verify chain" stored a checkpoint, the next print verifies from it, not from the start.
    integrity.verify(full=True)
    db.session.commit()
    _same_moment_entries(3)
    _, again = get(client, "/audit/print?category=security")
    words = plain(again)
    assert f"incrementally from checkpoint {head_seq}, 3 checked for this print" in words
    assert "Filter query category:security" in words and "All servers and apps" in words
    assert again.count('<li class="print-entry') == len(visible_ids(AuditEntry.category == "security"))
    assert 'class="print-entry cat-app' not in again


def test_print_and_verify_report_a_broken_chain(client, logged_in, history):
    # A checkpoint whose entry no longer carries the recorded hash: something rewrote the log.
    db.session.add(AuditCheckpoint(seq=3, hash="f" * 64, entries=3))
    db.session.commit()
    logged_in(history.ops)
    _, body = get(client, "/audit/print")
    assert "Verification: BROKEN: entry 3 no longer has the hash verified" in plain(body)
    response = client.post("/audit/verify", headers={"HX-Request": "true"})
    assert "Chain broken:" in plain(response.get_data(as_text=True))
    failed = db.session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    assert failed.action == "audit.verify_failed" and failed.actor_email == "ops@example.com"
    assert "entry 3 no longer has the hash" in failed.changes["problem"][1]


# -- verification button ----------------------------------------------------------------------------

def test_admins_verify_the_chain_from_the_timeline(client, logged_in, auth, history):
    logged_in(history.dev)
    _, body = get(client, "/audit")
    assert "Verify chain" not in body
    assert client.post("/audit/verify").status_code == 403
    auth.logout()
    logged_in(history.ops)
    _, body = get(client, "/audit")
    assert "Verify chain" in body
    head_seq, head_hash = chain.head(db.session.connection())
    response = client.post("/audit/verify", headers={"Referer": "http://localhost/audit?category=app"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/audit?category=app")
    _, body = get(client, "/audit")
    assert f"Chain intact: {head_seq} entries up to entry {head_seq}" in plain(body)
    recorded = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.verified"))
    assert recorded.changes["head_hash"][1] == head_hash and recorded.category == "security"
    # Again, incrementally: only what came after the checkpoint (the verified entry, the login...).
    response = client.post("/audit/verify", headers={"HX-Request": "true"})
    words = plain(response.get_data(as_text=True))
    assert "Chain intact." in words and f"from checkpoint {head_seq}" in words


# -- export ---------------------------------------------------------------------------------------

def _jsonl(body: str) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[-1]["action"] == "audit.export_head"
    return lines[-1]["intercity_audit_export"], lines[:-1]


def _recomputed(row: dict) -> str:
    values = dict(row, created_at=datetime.fromisoformat(row["created_at"].rstrip("Z")).replace(tzinfo=timezone.utc))
    return chain.compute_hash(values)


def test_jsonl_export_lets_an_auditor_verify_offline(client, logged_in, history):
    logged_in(history.viewer)  # viewers may export
    response = client.get("/audit/export.jsonl")
    assert response.status_code == 200 and response.is_streamed  # checked before reading: reading buffers it
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    meta, rows = _jsonl(response.get_data(as_text=True))
    head_seq, head_hash = chain.head(db.session.connection())
    assert meta["chain_head"] == {"seq": head_seq, "hash": head_hash} and meta["filtered"] is False
    assert [r["seq"] for r in rows] == list(range(1, head_seq + 1))
    previous = chain.GENESIS
    for row in rows:
        assert row["prev_hash"] == previous and _recomputed(row) == row["hash"]
        previous = row["hash"]
    # The export is an entry itself, inside the export.
    assert rows[-1]["action"] == "audit.exported" and rows[-1]["actor_email"] == "viewer@example.com"


def test_filtered_csv_export_says_it_is_filtered(client, logged_in, history):
    logged_in(history.ops)
    response = client.get("/audit/export.csv?q=app:api&category=security")
    body = response.get_data(as_text=True)
    today = utcnow().strftime("%Y-%m-%d")
    assert response.headers["Content-Disposition"] == f'attachment; filename="intercity-audit-api-filtered-{today}.csv"'
    head_seq, head_hash = chain.head(db.session.connection())
    *records, last = list(csv.DictReader(io.StringIO(body)))
    assert (last["action"], int(last["seq"]), last["hash"]) == ("audit.export_head", head_seq, head_hash)
    assert json.loads(last["diff"])["filter"] == "query category:security app:api"
    expected = db.session.scalars(select(AuditEntry.seq).where(
        AuditEntry.app_name == "api", AuditEntry.category == "security").order_by(AuditEntry.seq)).all()
    assert [int(r["seq"]) for r in records] == expected and len(expected) >= 4
    assert all(r["hash"] and r["prev_hash"] for r in records)
    exported = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.exported"))
    assert exported.changes == {"filter": [None, "query category:security app:api"], "format": [None, "csv"]}
    # The timeline's own export links carry its filter and scope.
    _, page = get(client, f"/servers/{history.server.id}/apps/api/audit?category=security")
    link = html.unescape(re.search(r'href="(/audit/export\.csv[^"]*)"', page).group(1))
    assert parse_qs(urlsplit(link).query) == {"q": ["server:prod-1 app:api category:security"]}


def test_cli_export(runner, history):
    result = runner.invoke(args=["audit", "export", "--format", "jsonl", "--query", "app:api"])
    assert result.exit_code == 0, result.output
    meta, rows = _jsonl(result.output)
    assert meta["filtered"] is True and meta["filter"] == "query app:api"
    assert rows and all(r["app_name"] == "api" for r in rows)
    assert all(_recomputed(r) == r["hash"] for r in rows)
    exported = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.exported"))
    assert exported.actor_kind == "cli" and exported.actor_os_user
    result = runner.invoke(args=["audit", "export", "--format", "csv"])
    assert result.exit_code == 0 and result.output.startswith('"seq","id",')
    assert json.loads(list(csv.DictReader(io.StringIO(result.output)))[-1]["diff"])["filtered"] is False
    result = runner.invoke(args=["audit", "export", "--format", "csv", "--query", "colour:red"])
    assert result.exit_code == 2 and "Unknown qualifier" in result.output


# -- access and secrets ---------------------------------------------------------------------------

def _audit_urls(app, server_id: int, entry_id: int) -> list[tuple[str, str]]:
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("audit."):
            method = "POST" if "POST" in rule.methods else "GET"
            urls.append((method, rule.rule.replace("<int:server_id>", str(server_id)).replace("<name>", "api")
                         .replace("<seq:seq>", str(entry_id))))
    return urls


def test_every_audit_page_needs_login(app, client, history):
    urls = _audit_urls(app, history.server.id, 1)
    assert len(urls) >= 10
    for method, url in urls:
        response = client.open(url, method=method)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_secrets_never_reach_pages_prints_or_exports(client, logged_in, runner, history):
    logged_in(history.ops)
    bodies = []
    for method, url in _audit_urls(client.application, history.server.id, 1):
        if method == "GET":
            bodies.append(client.get(url).get_data(as_text=True))
    for seq in db.session.scalars(select(AuditEntry.seq)):
        bodies.append(client.get(f"/audit/{seq}").get_data(as_text=True))
    for params in ("?q=app:api", "?category=security", "?q=action:env_var.*"):
        for url in ("/audit", "/audit/print", "/audit/export.csv", "/audit/export.jsonl"):
            bodies.append(client.get(url + params).get_data(as_text=True))
    bodies.append(runner.invoke(args=["audit", "export", "--format", "csv"]).output)
    with client.application.test_request_context("/"):
        bodies.append(render_template_string(
            '{% with timeline_server_id=sid %}{% include "audit/_recent.html" %}{% endwith %}', sid=history.server.id))
    assert len(bodies) > 40 and all(bodies)
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    # ... while the env var entries are there, as fingerprints.
    assert any("changed · fingerprint" in body for body in bodies)


# -- schema ---------------------------------------------------------------------------------------

def test_timeline_indexes_exist_at_head_and_triggers_survive(app):
    connection = db.session.connection()
    indexes = {index["name"] for index in inspect(connection).get_indexes("audit_entries")}
    declared = {index.name for index in AuditEntry.__table__.indexes}
    assert {"ix_audit_entries_app_name_seq", "ix_audit_entries_operation_action",
            "ix_audit_entries_actor_kind_seq"} <= declared <= indexes
    if connection.dialect.name == "sqlite":
        triggers = set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                               "AND tbl_name = 'audit_entries'")))
        assert {"audit_entries_no_update", "audit_entries_no_delete"} <= triggers
    else:
        triggers = set(connection.scalars(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_entries'::regclass "
                                               "AND NOT tgisinternal")))
        assert {"audit_entries_append_only", "audit_entries_no_truncate"} <= triggers


def test_query_plans_use_the_timeline_indexes(app):
    connection = db.session.connection()
    statement = query.entries_statement([AuditEntry.app_name == "api"], limit=50)
    compiled = statement.compile(connection, compile_kwargs={"literal_binds": True})
    if connection.dialect.name == "sqlite":
        plan = " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    else:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(row[0] for row in connection.execute(text(f"EXPLAIN {compiled}")))
    # The app by name alone, newest first; folding probes an index on operation_id (either one serves).
    assert "ix_audit_entries_app_name_seq" in plan and "ix_audit_entries_operation" in plan
