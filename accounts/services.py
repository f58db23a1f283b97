"""Writes to the user's own account; the profile page calls these."""

from accounts.exceptions import AccountError
from accounts.models import User
from iofold.lib.text import has_nul


def update_profile(*, user: User, name: str) -> User:
    """Set the user's display name (blank: pages fall back to their email's local part)."""
    name = (name or "").strip()
    longest = User._meta.get_field("name").max_length
    if len(name) > longest:
        raise AccountError(f"A name is at most {longest} characters.")
    if has_nul(name):
        raise AccountError("A name cannot contain a NUL character.")
    user.name = name
    user.save(update_fields=["name"])
    return user
