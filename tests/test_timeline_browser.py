"""The timeline in headless Chromium: chips, the query box, load older, live outcomes, print to PDF."""
from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from intercity.audit import chain, query
from intercity.extensions import db
from intercity.models import AuditEntry
from tests.support.builders import PASSWORD
from tests.support.timeline_data import SECRETS, finish_operation, team_history
from tests.test_timeline import _same_moment_entries

pytestmark = [pytest.mark.postgresql_only, pytest.mark.browser]


@pytest.fixture(autouse=True)
def _jobs_wait(redis_queue):
    return redis_queue


@pytest.fixture
def history(app):
    return team_history()


def login(page, email: str) -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(servers|apps)"))  # admins start at the servers, others at every app


def categories(page) -> set[str]:
    return set(page.eval_on_selector_all(
        "#timeline-entries > li.tl-entry",
        "els => els.map(e => [...e.classList].find(c => c.startsWith('cat-')).slice(4))"))


def params(page) -> dict:
    return parse_qs(urlsplit(page.url).query)


def query_of(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("q", [""])[0]


def test_chips_and_query_box_filter_in_place_and_keep_the_url(page, history):
    login(page, "ops@example.com")
    page.goto("/audit")
    assert categories(page) == {"security", "app", "server", "team"}

    # A chip writes its category: term into the box and the URL: one query, one view.
    page.click("a.chip[data-category=security]")
    page.wait_for_url(lambda url: query_of(url) == "category:security")
    assert categories(page) == {"security"}
    assert page.get_attribute("a.chip[data-category=security]", "aria-pressed") == "true"
    assert page.input_value("#timeline-q") == "category:security"

    page.click("a.chip[data-category=app]")
    page.wait_for_url(lambda url: query_of(url) == "category:security category:app")
    assert params(page)["q"] == ["category:security category:app"]
    assert page.input_value("#timeline-q") == "category:security category:app"
    assert categories(page) == {"security", "app"}

    page.fill("#timeline-q", page.input_value("#timeline-q") + " action:env_var.*")
    page.press("#timeline-q", "Enter")
    page.wait_for_url(re.compile(r"action"))
    texts = page.locator("#timeline-entries .sentence").all_inner_texts()
    assert texts and all(re.search(r"(set|changed) (DATABASE_URL|API_TOKEN) on api", t) for t in texts)
    assert page.get_attribute("a.chip[data-category=app]", "aria-pressed") == "true"  # the chips stay pressed

    # The URL is the view: opening it afresh shows the same entries, without htmx involved.
    shown = page.locator("#timeline-entries .sentence").all_inner_texts()
    page.goto(page.url)
    assert page.locator("#timeline-entries .sentence").all_inner_texts() == shown

    # A bare word is free text, not an error.
    page.fill("#timeline-q", "database_url")
    page.press("#timeline-q", "Enter")
    page.wait_for_url(re.compile(r"q=database_url"))
    texts = page.locator("#timeline-entries .sentence").all_inner_texts()
    assert texts and all("DATABASE_URL" in t for t in texts)
    assert page.get_attribute("a.chip:text-is('All')", "aria-pressed") == "true"

    page.fill("#timeline-q", "actor:dev@example.com when:today")
    page.press("#timeline-q", "Enter")
    page.wait_for_selector("[role=alert].query-error")
    assert "'when:today'" in page.inner_text(".query-error")
    assert page.locator("#timeline-entries li.tl-entry").count() == 0

    page.go_back()
    page.wait_for_url(re.compile(r"q=database_url"))
    page.go_back()
    page.wait_for_url(re.compile(r"action"))
    page.wait_for_selector("#timeline-entries li.tl-entry")
    assert page.locator("#timeline-entries .sentence").all_inner_texts() == shown

    page.click("a.chip:text-is('All')")
    page.wait_for_url(lambda url: "category" not in url)
    assert params(page)["q"] == ["action:env_var.*"]
    assert page.input_value("#timeline-q") == "action:env_var.*"


def test_load_older_appends_the_next_page(page, history):
    _same_moment_entries(query.PAGE_SIZE + 12)
    total = db.session.scalar(select(db.func.count()).select_from(
        query.entries_statement([], limit=None).subquery()))
    login(page, "viewer@example.com")
    page.goto("/audit")
    rows = page.locator("#timeline-entries > li.tl-entry")
    assert rows.count() == query.PAGE_SIZE
    page.click("#load-older a")
    # total + 1: logging in in the browser wrote an entry too
    expect(rows).to_have_count(min(total + 1, 2 * query.PAGE_SIZE))
    ids = page.eval_on_selector_all("#timeline-entries > li.tl-entry", "els => els.map(e => e.id)")
    assert len(ids) == len(set(ids))
    assert "/audit" == urlsplit(page.url).path and "before" not in page.url  # appending does not move the page


def test_a_pending_entry_turns_applied_without_a_reload(page, history):
    login(page, "dev@example.com")
    restart = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    page.goto(f"/servers/{history.server.id}/apps/api/audit")
    badge = page.locator(f"#entry-{restart.seq} .badge")
    assert badge.inner_text().strip() == "pending"
    finish_operation(history.restart_op, runs=[{"argv": ["dokku", "ps:restart", "api"], "stdout": "Restarted"}])
    page.wait_for_selector(f"#entry-{restart.seq} .badge.applied", timeout=8000)
    assert page.get_attribute(f"#entry-{restart.seq}", "hx-trigger") is None
    page.click(f"#entry-{restart.seq} summary")
    assert "dokku ps:restart api" in page.inner_text(f"#entry-{restart.seq} .runs")


def test_an_open_pending_entry_stays_open_while_it_polls_and_after_it_ends(page, history):
    login(page, "dev@example.com")
    restart = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    page.goto(f"/servers/{history.server.id}/apps/api/audit")
    row = f"#entry-{restart.seq}"
    page.click(f"{row} summary")
    assert page.get_attribute(f"{row} details", "open") is not None
    with page.expect_response(lambda r: urlsplit(r.url).path == f"/audit/{restart.seq}", timeout=8000) as polled:
        pass
    assert polled.value.ok and "open=1" in polled.value.url
    page.wait_for_timeout(300)  # the swap settles
    assert page.locator(f"{row} .badge").inner_text().strip() == "pending"
    assert page.get_attribute(f"{row} details", "open") is not None
    page.wait_for_timeout(2500)  # at least one more poll
    assert page.get_attribute(f"{row} details", "open") is not None

    finish_operation(history.restart_op, runs=[{"argv": ["dokku", "ps:restart", "api"], "stdout": "Restarted"}])
    page.wait_for_selector(f"{row} .badge.applied", timeout=8000)
    assert page.get_attribute(row, "hx-trigger") is None
    assert page.get_attribute(f"{row} details", "open") is not None
    expect(page.locator(f"{row} .runs")).to_be_visible()
    assert "dokku ps:restart api" in page.inner_text(f"{row} .runs")


def test_print_to_pdf(page, history):
    from pypdf import PdfReader

    _same_moment_entries(40)
    login(page, "viewer@example.com")
    page.goto(f"/servers/{history.server.id}/apps/api/audit/print")
    pdf = page.pdf(format="A4", print_background=True)
    reader = PdfReader(io.BytesIO(pdf))
    pages = [p.extract_text() for p in reader.pages]
    text = " ".join(" ".join(pages).split())
    compact = "".join(text.split()).replace("ﬁ", "fi")  # lines wrap anywhere in a PDF's text

    def has(sentence: str) -> bool:
        return "".join(sentence.split()) in compact

    assert len(reader.pages) >= 2
    assert has("App api on server prod-1")
    assert has("dev@example.com set DATABASE_URL on api (prod-1) applied")
    assert has("dev@example.com added domain api.example.com to api (prod-1) failed")
    assert has("Why it failed: domains:add exited with 1")
    assert has("value changed · fingerprint")
    assert has("h39.example.com") and has("h0.example.com")  # every entry, not one page
    assert f"Page 1 of {len(reader.pages)}" in pages[0]
    assert f"Page {len(reader.pages)} of {len(reader.pages)}" in pages[-1]
    head_seq, head_hash = chain.head(db.session.connection())
    assert f"Chainhead:{head_seq}:{head_hash}" in compact
    assert has("Verification: intact")
    assert "Log out" not in text and "Load older" not in text
    for secret in SECRETS:
        assert secret not in compact
