"""Audit history for the timeline tests: a realistic team's changes, and raw entries at chosen times."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import insert

from intercity.audit import chain
from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import make_entry, record_event
from intercity.audit.rules import Scope
from intercity.extensions import db
from tests.support.builders import make_user

SECRETS = ("s3cr3t-DATABASE-value-9f8e7d", "tok-LIVE-4242-zebra-quartz", "rediss://user:Pa55-word-XYZZY@cache")


def append_raw(entries: list[dict]) -> list[int]:
    """Append entries with chosen fields (created_at included) to the chain, as capture would; commits."""
    connection = db.session.connection()
    seq, prev = chain.lock_head(connection)
    from intercity.audit.categories import ACTIONS, BY_KIND
    from intercity.models import AuditEntry

    rows = []
    for values in entries:
        seq += 1
        fields = dict(values)
        created_at = fields.pop("created_at", datetime.now(timezone.utc))
        actor = fields.pop("actor", Actor("user", 1, "dev@example.com", "member"))
        action = fields.pop("action")
        # The category table's, as capture files it (an operation outcome's follows its kind: say so).
        listed = ACTIONS[action][0]
        category = fields.pop("category", "app" if listed == BY_KIND else listed)
        row = make_entry(action, category, actor=actor, **fields)
        row.update(seq=seq, created_at=created_at, prev_hash=prev)
        row["hash"] = prev = chain.compute_hash(row)
        rows.append(row)
    connection.execute(insert(AuditEntry.__table__), rows)
    db.session.commit()
    return [row["seq"] for row in rows]


def finish_operation(op, status: str = "succeeded", runs: list[dict] | None = None, reason: str | None = None):
    """What the worker does when an operation ends: status, command runs, one outcome entry."""
    from intercity.models import CommandRun
    from intercity.models.base import utcnow

    requester = Actor("user", op.requested_by_id, op.requested_by_email, op.requested_by_role)
    with acting_as(requester.on_behalf("worker")):
        op.status = status
        op.reason = reason
        op.finished_at = utcnow()
        for position, run in enumerate(runs or []):
            db.session.add(CommandRun(operation_id=op.id, position=position, server_name=op.server_name,
                                      argv=json.dumps(run["argv"]), exit_code=run.get("exit_code", 0),
                                      stdout=run.get("stdout", ""), stderr=run.get("stderr", ""),
                                      error=run.get("error"), started_at=utcnow(), finished_at=utcnow()))
        record_event(db.session, f"operation.{status}", category=op.category,
                     scope=Scope(op.server_id, op.server_name, op.app_id, op.app_name),
                     target_type="operation", target_id=op.id, target_label=op.title, operation_id=op.id,
                     diff={"status": [None, status], "reason": [None, reason]})
        db.session.commit()


class History:
    """Who did what, for tests to refer to."""


def team_history() -> History:
    """ops@example.com (admin) adds prod-1 and a deploy key; dev@example.com (member) creates api, sets
    env vars, adds a domain, restarts; the worker applies some of it; a key is removed; a login fails."""
    from intercity.models import App, DeployKey, Domain, EnvVar, Server
    from intercity.services.operations import request_operation
    from intercity.validation import public_key

    h = History()
    h.ops = make_user("admin", email="ops@example.com")
    h.dev = make_user("member", email="dev@example.com")
    h.viewer = make_user("viewer", email="viewer@example.com")
    with acting_as(Actor.for_user(h.ops)):
        h.server = Server(name="prod-1", host="10.0.0.5", port=22, ssh_user="root")
        h.server.generate_key_pair()
        db.session.add(h.server)
        db.session.commit()
        key_text = h.server.public_key.replace("intercity@prod-1", "ci-bot")
        key = public_key(key_text)
        h.key = DeployKey(server=h.server, name="ci-bot", public_key=key_text, key_type=key.key_type,
                          fingerprint=key.fingerprint, added_by_email="ops@example.com")
        db.session.add(h.key)
        h.key_op = request_operation("deploy_keys.apply", server=h.server, payload={"add": ["ci-bot"], "remove": []},
                                     applies=[h.key])
        db.session.commit()
    finish_operation(h.key_op, runs=[{"argv": ["dokku", "ssh-keys:add", "ci-bot"], "stdout": "SHA256:added"}])
    with acting_as(Actor.for_user(h.dev)):
        h.app = App(server=h.server, name="api")
        db.session.add(h.app)
        db.session.flush()
        h.create_op = request_operation("app.create", server=h.server, app=h.app, applies=[h.app])
        db.session.commit()
    finish_operation(h.create_op, runs=[{"argv": ["dokku", "apps:create", "api"], "stdout": "-----> Creating api..."}])
    with acting_as(Actor.for_user(h.dev)):
        added = []
        for key_name, value in (("DATABASE_URL", SECRETS[0]), ("API_TOKEN", SECRETS[1])):
            env = EnvVar(app=h.app, key=key_name)
            env.value = value
            db.session.add(env)
            added.append(env)
        h.env_op = request_operation("env.apply", server=h.server, app=h.app,
                                     payload={"set": ["API_TOKEN", "DATABASE_URL"], "unset": [], "restart": True},
                                     applies=added)
        db.session.commit()
    finish_operation(h.env_op, runs=[
        {"argv": ["dokku", "config:set", "--encoded", "api", "DATABASE_URL=[redacted]", "API_TOKEN=[redacted]"],
         "stdout": "-----> Setting config vars"},
        {"argv": ["dokku", "config:export", "--format", "json", "api"], "stdout": "{...}"},
    ])
    with acting_as(Actor.for_user(h.dev)):
        env = db.session.scalar(db.select(EnvVar).where(EnvVar.key == "DATABASE_URL"))
        env.value = SECRETS[2]
        h.env_update_op = request_operation("env.apply", server=h.server, app=h.app,
                                            payload={"set": ["DATABASE_URL"], "unset": [], "restart": True},
                                            applies=[env])
        db.session.commit()
    finish_operation(h.env_update_op, runs=[
        {"argv": ["dokku", "config:set", "--encoded", "api", "DATABASE_URL=[redacted]"], "stdout": "ok"}])
    with acting_as(Actor.for_user(h.dev)):
        domain = Domain(app=h.app, hostname="api.example.com")
        db.session.add(domain)
        h.failing_op = request_operation("domains.apply", server=h.server, app=h.app,
                                         payload={"add": ["api.example.com"], "remove": []}, applies=[domain])
        db.session.commit()
    finish_operation(h.failing_op, status="failed", reason="domains:add exited with 1",
                     runs=[{"argv": ["dokku", "domains:add", "api", "api.example.com"], "exit_code": 1,
                            "stderr": " !     Invalid domain"}])
    with acting_as(Actor.for_user(h.dev)):
        h.restart_op = request_operation("app.restart", server=h.server, app=h.app)
        db.session.commit()  # left pending: no worker consumes the test queue
    with acting_as(Actor.for_user(h.ops)):
        db.session.delete(h.key)
        h.remove_key_op = request_operation("deploy_keys.apply", server=h.server, payload={
            "add": [], "remove": [{"name": "ci-bot", "fingerprint": key.fingerprint, "adopted": False}]},
            applies=[h.key])
        db.session.commit()
    with acting_as(Actor("anonymous")):
        record_event(db.session, "user.login_failed", target_type="user", target_label="mallory@example.com")
        db.session.commit()
    with acting_as(Actor.for_user(h.ops)):
        record_event(db.session, "settings.changed", target_type="settings",
                     target_label="digest schedule", diff={"digest": ["weekly", "daily"]})
        db.session.commit()
    return h
