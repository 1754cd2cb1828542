"""Exports a spreadsheet opens safely and completely: header first, chain head last, no formulas, what ran."""
from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
from sqlalchemy import select

from intercity.audit import chain, export
from intercity.dokku.transcript import commands_sha256
from intercity.extensions import db
from intercity.models import AuditEntry, CommandRun, EnvVar
from intercity.models.base import utcnow
from tests.support.builders import make_app, make_server
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")
FORMULA = "=cmd|' /C calc'!A0"


def _records(body: str) -> list[dict]:
    reader = csv.reader(io.StringIO(body, newline=""))
    header = next(reader)
    assert header == list(export.CSV_COLUMNS)
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    return rows


@pytest.fixture
def failed_operation(app, member):
    """An env change whose operation ran two commands and failed, written by the worker's own code."""
    from intercity.jobs import runner
    from intercity.services import env as env_service

    api = make_app(make_server(name="shop"), name="api")
    op = env_service.set_var(api, member, key="API_TOKEN", value="tok_value_long").operation
    db.session.commit()
    op.status = "running"
    now = utcnow()
    for position, (argv, code, out, err, error) in enumerate([
            (["dokku", "config:set", "api", "API_TOKEN=[redacted]"], 0, "-----> Setting config\n", "", None),
            (["dokku", "ps:restart", "api"], None, "", "line one\nline two", "timed out after 600 s")]):
        db.session.add(CommandRun(operation_id=op.id, position=position, server_name="shop", argv=json.dumps(argv),
                                  exit_code=code, stdout=out, stderr=err, error=error, started_at=now,
                                  finished_at=now))
    db.session.commit()
    runner._finish(op.id, "failed", "Dokku could not restart api.", [])
    return op


def test_csv_header_comes_first_and_the_chain_head_last(client, logged_in, admin, failed_operation):
    logged_in(admin)
    response = client.get("/audit/export.csv")
    body = response.get_data(as_text=True)
    assert body.startswith('"seq","id","created_at"')
    *rows, last = _records(body)
    head_seq, head_hash = chain.head(db.session.connection())
    assert (last["action"], int(last["seq"]), last["hash"]) == (export.HEAD_ACTION, head_seq, head_hash)
    assert response.headers["X-Intercity-Chain-Head"] == f"{head_seq}:{head_hash}"
    assert [int(r["seq"]) for r in rows] == list(range(1, head_seq + 1))
    # One line per run: the summary says what ran and how it ended.
    [outcome] = [r for r in rows if r["action"] == "operation.failed"]
    assert outcome["commands"] == ("dokku config:set api API_TOKEN=[redacted] → exit 0 | "
                                   "dokku ps:restart api → timed out after 600 s")


def test_a_filter_cannot_inject_a_line(client, logged_in, admin):
    logged_in(admin)
    body = client.get("/audit/export.csv", query_string={"q": f'app:"x\n{FORMULA}\n"'}).get_data(as_text=True)
    assert not any(line.startswith(("=", "#")) for line in body.splitlines())
    [last] = _records(body)
    assert FORMULA in json.loads(last["diff"])["filter"]
    assert not last["diff"].startswith(export.FORMULA_START)


def test_cells_a_spreadsheet_would_run_are_neutralised(client, logged_in, admin):
    # An anonymous visitor plants formulas through a failed login's User-Agent and X-Request-ID (the typed
    # email is kept only when it is an account's, so it cannot carry one).
    client.post("/login", data={"email": FORMULA, "password": "x"},
                headers={"User-Agent": "+SUM(1+1)", "X-Request-ID": "@SUM(1)"})
    client.post("/login", data={"email": "\t-2+3", "password": "x"}, headers={"User-Agent": FORMULA})
    client.post("/login", data={"email": "nobody@example.com", "password": "x"}, headers={"User-Agent": "-2+3"})
    logged_in(admin)
    rows = _records(client.get("/audit/export.csv").get_data(as_text=True))
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell.startswith(export.FORMULA_START)]
    lowered = [cell.lower() for cell in cells]
    for planted in (FORMULA, "+SUM(1+1)", "@SUM(1)", "-2+3"):
        assert "'" + planted.lower() in lowered, planted


def test_jsonl_carries_the_command_runs_an_offline_verifier_needs(client, logged_in, admin, failed_operation):
    logged_in(admin)
    lines = [json.loads(line) for line in client.get("/audit/export.jsonl").get_data(as_text=True).splitlines()]
    assert lines[-1]["action"] == export.HEAD_ACTION
    [outcome] = [line for line in lines if line["action"] == "operation.failed"]
    runs = outcome["command_runs"]
    assert [run["exit_code"] for run in runs] == [0, None] and runs[1]["stderr"] == "line one\nline two"
    digest = json.loads(outcome["diff"])["commands_sha256"][1]
    assert hashlib.sha256(chain.canonical_json(runs).encode()).hexdigest() == digest
    stored = db.session.scalars(select(CommandRun).where(CommandRun.operation_id == failed_operation.id)).all()
    assert digest == commands_sha256(stored)
    # Entries that requested the operation carry no runs of their own.
    assert all("command_runs" not in line for line in lines if line["action"] == "env_var.created")


def test_file_names_name_the_scope_and_the_date(client, logged_in, admin):
    logged_in(admin)
    server = make_server(name="shop")
    make_app(server, name="api")
    today = utcnow().strftime("%Y-%m-%d")
    page = client.get(f"/servers/{server.id}/apps/api/audit").get_data(as_text=True)
    assert "server:shop+app:api" in page
    for query, name in (("server:shop app:api", f"intercity-audit-shop-api-{today}.csv"),
                        ("", f"intercity-audit-all-{today}.csv"),
                        ("app:api action:env_var.*", f"intercity-audit-api-filtered-{today}.csv")):
        response = client.get("/audit/export.csv", query_string={"q": query})
        response.close()
        assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    response = client.get("/audit/export.jsonl", query_string={"q": "server:shop"})
    response.close()
    assert response.headers["Content-Disposition"] == f'attachment; filename="intercity-audit-shop-{today}.jsonl"'
