"""A user's memberships (with their workspaces), read once and then from the cache.

Every page reads them (the workspace in the URL and the switcher's list); from the cache
that is one round trip to Redis instead of a joined query, about half a millisecond of
the web process's CPU per page. Changes take effect on the next request: each user's
entry is stamped, and any change to a membership or a workspace gives its users a new
stamp, at once and again when the transaction commits, so an entry read before the
change committed (and stored after it) is never served.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.core.cache import cache
from django.db import transaction

from workspaces.models import Membership

# A bound on anything written around the ORM's signals (raw SQL, ``update()``); the
# services and the admin go through signals or ``forget_memberships``.
CACHE_SECONDS = 300
# Stamps outlive entries; one evicted early only costs a read from the database.
STAMP_SECONDS = 24 * 3600


def _keys(user_id: int) -> tuple[str, str]:
    return f"workspaces:memberships:{user_id}", f"workspaces:memberships:{user_id}:stamp"


def user_memberships(user) -> list[Membership]:
    """The user's memberships in live workspaces, with them, in the switcher's order."""
    if not user.is_authenticated:
        return []
    entry_key, stamp_key = _keys(user.pk)
    found = cache.get_many([entry_key, stamp_key])
    stamp, entry = found.get(stamp_key), found.get(entry_key)
    if stamp is not None and entry is not None and entry[0] == stamp:
        return entry[1]
    if stamp is None:
        stamp = uuid.uuid4().hex
        if not cache.add(stamp_key, stamp, STAMP_SECONDS):
            stamp = cache.get(stamp_key)
    memberships = list(
        Membership.objects.for_user(user)
        .select_related("workspace")
        .order_by("workspace__name", "workspace_id")
    )
    if stamp is not None:
        cache.set(entry_key, (stamp, memberships), CACHE_SECONDS)
    return memberships


def forget_memberships(user_ids: Iterable[int]) -> None:
    """Make these users' next request read their memberships from the database."""
    stamp_keys = [_keys(user_id)[1] for user_id in set(user_ids)]
    if not stamp_keys:
        return

    def restamp() -> None:
        cache.set_many({key: uuid.uuid4().hex for key in stamp_keys}, STAMP_SECONDS)

    restamp()
    # A request that read the rows before the change committed may store them after the
    # stamp above: a second stamp once it committed leaves that entry unread.
    transaction.on_commit(restamp)


def forget_workspace_members(workspace_id: int) -> None:
    """Forget the memberships of everyone in a workspace (renamed, being deleted...)."""
    forget_memberships(
        Membership.objects.for_workspace(workspace_id).values_list("user_id", flat=True)
    )
