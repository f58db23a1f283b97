from datetime import timedelta

# A sync no worker has touched for this long is failed, and the next one resumes from its
# cursor. A running sync beats its heartbeat every few seconds and is taken over as soon as
# its worker dies (iofold/lib/runs.py), so this catches queued runs no worker picks up.
SYNC_STALE_AFTER = timedelta(minutes=10)

# Upload and API limits. An upload is processed in the request, so it is kept small
# enough to finish well inside a proxy timeout.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_LINE_BYTES = 2 * 1024 * 1024
MAX_API_TRACES = 1000
UPLOAD_BATCH = 500
MAX_REPORTED_ERRORS = 100

# A schedule runs at most every 5 minutes and at least weekly; beyond a week, sync by hand.
MIN_SYNC_INTERVAL_MINUTES = 5
MAX_SYNC_INTERVAL_MINUTES = 7 * 24 * 60


def interval_text(minutes: int) -> str:
    """Say how often a schedule runs, in the largest whole unit: "every 15 minutes",
    "every hour", "every 2 days" (the API takes any count of minutes, not only the form's)."""
    unit, size = next(
        (u, s) for u, s in (("day", 1440), ("hour", 60), ("minute", 1)) if minutes % s == 0
    )
    count = minutes // size
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


SYNC_INTERVAL_CHOICES = [(None, "Manual only")] + [
    (minutes, interval_text(minutes).capitalize()) for minutes in (15, 60, 360, 1440)
]
