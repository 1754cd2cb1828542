"""What a password must be: long enough and not one of the passwords everybody tries first."""
from __future__ import annotations

from functools import lru_cache

from intercity.validation import ValidationError

MIN_LENGTH = 12


@lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    # zxcvbn ships the 30,000 most common passwords from real leaks, ranked; we only look them up.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check(password: str, field: str = "password") -> str:
    """The password, or a ValidationError naming the reason and the form field."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        raise ValidationError(f"Use a password of at least {MIN_LENGTH} characters.", field)
    if password.lower() in _common() or password.lower().replace(" ", "") in _common():
        raise ValidationError("This password is one of the most common ones, which attackers try first: "
                              "choose another.", field)
    return password
