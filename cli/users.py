"""``lakehouse users create-admin``: the only way to make an admin (sign-up never can)."""

from __future__ import annotations

import re

from api.auth import hash_password
from records.users import EmailTaken, UserRecords

MIN_ADMIN_PASSWORD_CHARS = 14
_COMMON = {"password", "admin", "administrator", "lakehouse", "letmein", "qwerty", "123456", "welcome"}


class WeakPassword(ValueError):
    """The password is refused; the message says why."""


def check_admin_password(password: str, *, email: str) -> None:
    """Refuses a password that is short, of fewer than three character classes, or built on the
    email's name or a common word."""
    if len(password) < MIN_ADMIN_PASSWORD_CHARS:
        raise WeakPassword(f"use at least {MIN_ADMIN_PASSWORD_CHARS} characters (got {len(password)})")
    classes = sum(bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if classes < 3:
        raise WeakPassword("mix at least three of: lower case, upper case, digits, symbols")
    lowered = password.lower()
    name = email.split("@", 1)[0].lower()
    if len(name) >= 3 and name in lowered:
        raise WeakPassword("the password contains the email's name")
    if any(word in lowered for word in _COMMON) or len(set(lowered)) < 6:
        raise WeakPassword("the password is built on a common word or repeats too few characters")


def create_admin(users: UserRecords, *, email: str, password: str, display_name: str) -> dict:
    """Creates an admin account; raises WeakPassword or EmailTaken."""
    check_admin_password(password, email=email)
    return users.create(email=email, password_hash=hash_password(password), role="admin", display_name=display_name)


__all__ = ["EmailTaken", "WeakPassword", "check_admin_password", "create_admin"]
