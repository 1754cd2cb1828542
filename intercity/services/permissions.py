"""Role checks inside services: views check roles first, services refuse again so no caller can skip it."""
from __future__ import annotations


class NotAllowed(Exception):
    """The acting user's role does not reach what the action needs (views answer 403)."""


def require(user, role: str) -> None:
    if user is None or not user.can(role):
        who = getattr(user, "email", None) or "nobody"
        raise NotAllowed(f"{who} may not do this: it needs the {role} role.")
