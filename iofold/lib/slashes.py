"""An API address typed without its final slash: the request is sent on whole (308)."""

from django.http import JsonResponse
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes

from iofold.lib.bodies import API_PREFIX


class ApiAppendSlashMiddleware(CommonMiddleware):
    """Django's ``CommonMiddleware``, except that an API address missing its final slash
    answers 308 with the address in ``Location`` and in a JSON ``detail``.

    Django's 301 is followed by clients as a GET: ``POST /api/v1/eval-sets`` read the list
    (a 200) and created nothing, and with ``DEBUG`` Django raises instead (a 500). A 308
    keeps the method and the body. Pages keep Django's 301.
    """

    def process_response(self, request, response):
        if (
            response.status_code == 404
            and request.path_info.startswith(API_PREFIX)
            and self.should_redirect_with_slash(request)
        ):
            location = escape_leading_slashes(request.get_full_path(force_append_slash=True))
            response = JsonResponse(
                {"detail": f"The address ends with a slash: send the request to {location}"},
                status=308,
            )
            response["Location"] = location
        return super().process_response(request, response)
