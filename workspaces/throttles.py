"""API throttles: a budget per API token and one per user, on the shared cache.

A throttled request gets 429 with ``Retry-After`` (DRF's ``Throttled``, rendered by
``iofold.api.exception_handler``). Rates come from ``IOFOLD_API_THROTTLE_RATES``, read on
each request rather than when DRF loads, so settings can change them (tests turn them off).
"""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from workspaces.models import ApiToken

_OFF = {"", "off", "none", "0"}


class _SettingsRateThrottle(SimpleRateThrottle):
    def get_rate(self):
        rate = (settings.IOFOLD_API_THROTTLE_RATES or {}).get(self.scope) or ""
        return None if rate.strip().lower() in _OFF else rate


class ApiTokenRateThrottle(_SettingsRateThrottle):
    """Requests made with one API token."""

    scope = "token"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class ApiUserRateThrottle(_SettingsRateThrottle):
    """Requests of one user, by session or by any of their tokens."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
