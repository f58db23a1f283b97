"""Helpers shared by the integration tests."""

from datetime import UTC, datetime, timedelta

PUBLIC_KEY = "pk-lf-fake"
SECRET_KEY = "sk-lf-fake"


def recent_base_time(traces: int, spacing: timedelta) -> datetime:
    """Start the fake's traces so that the newest one is an hour old."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(hours=1) - spacing * traces


class Sleeps(list):
    """An injectable ``sleep`` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
