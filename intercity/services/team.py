"""The team: invitations, roles, deactivation, and the rule that one active admin always remains."""
from __future__ import annotations

import secrets
from datetime import timedelta

from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from intercity.audit.actor import Actor, acting_as
from intercity.extensions import db
from intercity.models import Invitation, User
from intercity.models.account import token_hash
from intercity.models.base import utcnow
from intercity.notify.outbox import send_mail
from intercity.services import sessions, users
from intercity.services.permissions import require
from intercity.validation import ValidationError

INVITATION_LIFETIME = timedelta(hours=72)


class LastAdmin(ValidationError):
    """The change would leave the panel without an active admin."""


def link(endpoint: str, **values) -> str:
    """An absolute link for mail, on the panel's public address (INTERCITY_BASE_URL).

    Built from the URL map bound to that address rather than the request's: mail may be written
    outside a request (the CLI), and a Host header must never choose where a token is sent.
    """
    base = urlsplit(current_app.config["INTERCITY_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path.rstrip("/") or "/",
                                       url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)


def members() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.active.desc(), User.email)))


def pending_invitations() -> list[Invitation]:
    rows = db.session.scalars(select(Invitation).where(Invitation.accepted_at.is_(None),
                                                       Invitation.revoked_at.is_(None))
                              .order_by(Invitation.created_at.desc())).all()
    return [row for row in rows if row.state == "pending"]


def invite(actor: User, email: str, role: str) -> Invitation:
    """Mail a single-use link to join with `role` (the caller commits; the mail goes after commit)."""
    require(actor, "admin")
    email = users.check_email(email)
    users.check_role(role)
    if users.email_taken(email):
        raise ValidationError(f"{email} already has an account.", "email")
    # A new invitation replaces an earlier one still open for the same address.
    for earlier in db.session.scalars(select(Invitation).where(Invitation.email == email,
                                                               Invitation.accepted_at.is_(None),
                                                               Invitation.revoked_at.is_(None))):
        earlier.revoked_at = utcnow()
    token = secrets.token_urlsafe(32)
    invitation = Invitation(email=email, role=role, token_hash=token_hash(token), invited_by_id=actor.id,
                            invited_by_email=actor.email, expires_at=utcnow() + INVITATION_LIFETIME)
    db.session.add(invitation)
    db.session.flush()
    url = link("team.accept", token=token)
    send_mail(email, "You are invited to Intercity",
              f"{actor.email} invited you to the team's Intercity panel as {role}.\n\n"
              f"Choose your password here (the link works once, for 72 hours):\n{url}\n\n"
              "If you did not expect this, ignore this message.")
    return invitation


def open_invitation(token: str, *, lock: bool = False) -> Invitation:
    """The pending invitation `token` names, or a ValidationError saying why it cannot be used."""
    if lock:
        users.lock_writes()
    query = select(Invitation).where(Invitation.token_hash == token_hash(token or ""))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    invitation = db.session.scalar(query)
    state = invitation.state if invitation else "unknown"
    reasons = {
        "unknown": "This invitation link is not valid. Ask an admin for a new one.",
        "accepted": "This invitation was already used. Log in instead.",
        "revoked": "This invitation was withdrawn. Ask an admin for a new one.",
        "expired": "This invitation has expired (links work for 72 hours). Ask an admin for a new one.",
    }
    if state != "pending":
        raise ValidationError(reasons[state], None)
    return invitation


def accept(token: str, password: str) -> User:
    """Create the invitee's account with the password they chose; the link is spent (the caller commits)."""
    invitation = open_invitation(token, lock=True)
    users.check_password(password)
    if users.email_taken(invitation.email):
        raise ValidationError(f"{invitation.email} already has an account. Log in instead.", None)
    user = User(email=invitation.email, role=invitation.role, active=True)
    user.set_password(password)
    db.session.add(user)
    # The invitee creates their own account (it has no id to name until it is flushed).
    with acting_as(Actor("user", None, invitation.email, invitation.role)):
        db.session.flush()
    with acting_as(Actor.for_user(user)):
        invitation.accepted_at = utcnow()
        db.session.flush()
    return user


def revoke(actor: User, invitation: Invitation) -> None:
    require(actor, "admin")
    if invitation.state != "pending":
        raise ValidationError("This invitation is no longer open.", None)
    invitation.revoked_at = utcnow()


def _lock_admins(actor: User) -> set[int]:
    """Lock the active admins' rows and return their ids; the actor must still be one of them.

    PostgreSQL: FOR UPDATE, so two admins demoting each other at once run one after the other
    and the second sees the first's change. SQLite: BEGIN IMMEDIATE serialises the writers.
    """
    users.lock_writes()
    query = (select(User).where(User.role == "admin", User.active.is_(True)).with_for_update()
             .execution_options(populate_existing=True))
    admins = {user.id for user in db.session.scalars(query)}
    if actor.id not in admins:
        raise ValidationError("You are no longer an active admin.", None)
    return admins


def _keep_an_admin(actor: User, target: User, what: str) -> None:
    admins = _lock_admins(actor)
    if target.id in admins and len(admins) == 1:
        raise LastAdmin(f"{target.email} is the last active admin and cannot be {what}: "
                        "make someone else an admin first.", None)


def change_role(actor: User, target: User, role: str) -> bool:
    """Give `target` another role; their sessions end so they log in again under it."""
    require(actor, "admin")
    users.check_role(role)
    if role != "admin":
        _keep_an_admin(actor, target, "demoted")
    else:
        _lock_admins(actor)
    if target.role == role:
        return False
    target.role = role
    sessions.end_all(target, "role_changed")
    return True


def deactivate(actor: User, target: User) -> None:
    require(actor, "admin")
    _keep_an_admin(actor, target, "deactivated")
    if not target.active:
        return
    target.active = False
    sessions.end_all(target, "deactivated")


def reactivate(actor: User, target: User) -> None:
    require(actor, "admin")
    if target.active:
        return
    target.active = True
