"""Read the matrix page's filters from its query string, naming the values it could not read."""

from evals.matrix.types import MatrixFilters
from iofold.lib.fields import whole_number
from traces.filters import TraceFilters, not_read

# The matrix's names for the trace filters it shares, and their labels on the page.
_SHARED = {"source": ("source", "Source"), "from": ("date_from", "From"), "to": ("date_to", "To")}


def read_matrix_filters(data) -> tuple[MatrixFilters, list[tuple[str, str]]]:
    """Return the filters and, as (label, why) pairs, the values dropped as unreadable.

    Source and dates read as the trace list's do. A dropped filter shows rows its reader
    did not ask for: the page names it (the API, whose serializer reads the same
    parameters, answers 400 instead).
    """
    given = {key: data.get(param) for param, (key, _) in _SHARED.items()}
    read = TraceFilters.from_data(given)
    labels = dict(_SHARED.values())
    unread = [(labels[key], why) for key, why in read.unread(given).items()]
    versions = data.getlist("v") if hasattr(data, "getlist") else []
    if bad := [v for v in versions if whole_number(v) is None]:
        unread.append(("Versions", not_read(bad[0], "a version id")))
    filters = MatrixFilters(
        only_disagreements=data.get("disagreements") in ("1", "on", "true"),
        date_from=read.date_from,
        date_to=read.date_to,
        source=read.source,
        version_ids=tuple(n for v in versions if (n := whole_number(v)) is not None),
    )
    return filters, unread


def read_matrix_page(data) -> tuple[int, list[tuple[str, str]]]:
    """Return the page asked for (1 if none) and, as ``read_matrix_filters``, why not read.

    ASCII digits only: "²" is a digit to ``str.isdigit`` but not to ``int``.
    """
    given = data.get("page") or "1"
    if (page := whole_number(given)) is not None:
        return page, []
    return 1, [("Page", not_read(given, "a page number"))]
