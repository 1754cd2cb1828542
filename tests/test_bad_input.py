"""Input that once answered 500: each now gets a 404 or a 422 with a message, on both databases."""
from __future__ import annotations

import io

import pytest

from intercity.models import EnvVar
from intercity.extensions import db
from tests.support.builders import make_app, make_server
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")
HUGE = [str(2**31), str(2**63), str(2**64), "9" * 30]


@pytest.fixture
def api(app, logged_in, member):
    logged_in(member)
    api = make_app(make_server(), name="api")
    var = EnvVar(app=api, key="API_TOKEN")
    var.value = "tok_value"
    db.session.add(var)
    db.session.commit()
    return api


def test_ids_beyond_what_a_row_holds_are_not_found(client, api):
    s = api.server_id
    for huge in HUGE:
        for url in (f"/audit/{huge}", f"/servers/{huge}", f"/servers/{huge}/apps/api", f"/operations/{huge}",
                    f"/servers/{s}/apps/api/domains/{huge}/remove"):
            method = "POST" if url.endswith("remove") else "GET"
            response = client.open(url, method=method, data={"confirmed": "1"})
            assert response.status_code == 404, (url, response.status_code)
        response = client.get("/audit", query_string={"before": huge})
        assert response.status_code == 200


@pytest.mark.parametrize("term", ["created:9999-12-31", "created:>=9999-12-31", "created:>9999-12-31",
                                  "created:<=9999-12-31", "created:9999-12-31..*"])
def test_the_last_day_of_the_calendar_is_a_filter_like_any_other(client, api, term):
    s = api.server_id
    for url in ("/audit", f"/servers/{s}/audit", f"/servers/{s}/apps/api/audit", "/audit/print",
                "/audit/export.csv", "/audit/export.jsonl"):
        response = client.get(url, query_string={"q": term})
        response.get_data()
        assert response.status_code == 200, (url, term, response.status_code)


def test_a_text_field_sent_as_a_file_is_refused_with_a_message(client, api):
    s = api.server_id
    for url, fields in ((f"/servers/{s}/apps/api/env", {"key": "A", "value": "x"}),
                        (f"/servers/{s}/apps/api/env/paste", {"block": "A=1"}),
                        (f"/servers/{s}/apps/api/env/API_TOKEN/edit", {"value": "x"})):
        for name in fields:
            data = {**fields, name: (io.BytesIO(b"A=1"), "x.env")}
            response = client.post(url, data=data, content_type="multipart/form-data")
            assert response.status_code == 422, (url, name)
            assert "take text, not files" in response.get_data(as_text=True)
    assert db.session.get(EnvVar, 1).value == "tok_value"


def test_nul_bytes_are_refused_with_a_message(client, api):
    s = api.server_id
    assert client.get("/audit", query_string={"q": "app:a\x00b"}).status_code == 422
    assert client.get(f"/servers/{s}/apps/a%00b").status_code == 404
    assert client.post(f"/servers/{s}/apps/api/env/A%00B/edit", data={"value": "x"}).status_code == 404
    response = client.post(f"/servers/{s}/apps/api/env", data={"key": "A", "value": "x\x00y"})
    assert response.status_code == 422 and "NUL byte" in response.get_data(as_text=True)
    client.post("/logout")
    response = client.post("/login", data={"email": "a\x00b@example.com", "password": "x"})
    assert response.status_code == 422 and "NUL byte" in response.get_data(as_text=True)
    for header in ("User-Agent", "X-Request-ID"):
        response = client.post("/login", data={"email": "x@example.com", "password": "x"}, headers={header: "a\x00b"})
        assert response.status_code == 400 and "NUL byte" in response.get_data(as_text=True)
