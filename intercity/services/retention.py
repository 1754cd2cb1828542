"""How many earlier values per variable (or deploy key name) the value history keeps: an admin setting."""
from __future__ import annotations

from intercity.extensions import db
from intercity.models import PanelSetting
from intercity.services import permissions
from intercity.validation import ValidationError

KEY = "value_history_keep"
DEFAULT = 10
# Enough for any team's undo; every kept value is an encrypted copy of a secret.
MAXIMUM = 1000


def keep() -> int:
    """The admin's setting, or the default when none was saved (or the saved text is not a number)."""
    row = db.session.get(PanelSetting, KEY)
    try:
        value = int(row.value) if row is not None else DEFAULT
    except ValueError:
        return DEFAULT
    return value if 1 <= value <= MAXIMUM else DEFAULT


def set_keep(user, text: str) -> bool:
    """Save a new retention (a `settings.changed` entry); returns whether it changed."""
    permissions.require(user, "admin")
    text = (text or "").strip()
    if not text.isdigit() or not 1 <= int(text) <= MAXIMUM:
        raise ValidationError(f"Give a whole number of values from 1 to {MAXIMUM}.", "keep")
    value = str(int(text))
    row = db.session.get(PanelSetting, KEY)
    if row is None:
        if value == str(DEFAULT):
            return False
        db.session.add(PanelSetting(key=KEY, value=value))
        return True
    if row.value == value:
        return False
    row.value = value
    return True
