"""A finished operation's outcome, kind and title on the timeline, its permalink and print view come from its
chained entries: rewriting the mutable `operations` row (triggers as they are) changes none of them."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry
from tests.support.audit import raw
from tests.test_audit_tamper import finished_operation
from tests.support.panel import no_worker  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("no_worker")


def test_rewriting_a_failed_operations_row_leaves_every_view_saying_failed(app, client, logged_in, member):
    op = finished_operation(status="failed", reason="Dokku said no.")
    db.session.commit()
    raw("UPDATE operations SET status = 'succeeded', reason = NULL, kind = 'app.refresh', "
        "requested_by_email = 'mallory@example.com' WHERE id = :op", op=op.id)
    db.session.expire_all()
    request = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    outcome = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "operation.failed"))
    logged_in(member)
    for url in ("/audit", f"/audit/{request.seq}", f"/audit/{outcome.seq}", "/audit/print",
                f"/servers/{op.server_id}/apps/api/audit"):
        body = client.get(url).get_data(as_text=True)
        assert "Dokku said no." in body and ">failed<" in body and ">applied<" not in body, url
        assert "refresh the app" not in body, url
        assert "mallory@example.com" not in body, url


def test_an_old_id_link_redirects_to_the_entrys_number_where_no_entry_has_that_number(client, logged_in, member):
    from tests.support.audit import drop_append_only_triggers
    from tests.support.builders import make_server

    make_server(name="prod-1")
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target_type == "server"))
    seq, old_id = entry.seq, entry.id
    db.session.commit()
    drop_append_only_triggers()
    # Ids that ran ahead of seqs (rolled-back inserts use ids up on PostgreSQL; here one is moved on).
    raw("UPDATE audit_entries SET id = :new WHERE id = :old", new=old_id + 5000, old=old_id)
    logged_in(member)
    response = client.get(f"/audit/{old_id + 5000}")
    assert response.status_code == 301 and response.headers["Location"].endswith(f"/audit/{seq}")
    assert "prod-1" in client.get(f"/audit/{seq}").get_data(as_text=True)
    assert client.get("/audit/99999999").status_code == 404
