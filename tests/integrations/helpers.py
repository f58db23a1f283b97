"""Helpers shared by the integration tests."""

import json
import time
from datetime import UTC, datetime, timedelta

from integrations import services, webhooks

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


def unreachable_langfuse(workspace, **settings):
    """A Langfuse integration whose host nothing answers (port 9): for what needs one saved."""
    return services.create_integration(
        workspace=workspace,
        name="lf",
        host="http://127.0.0.1:9",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        **settings,
    )


def webhook_integration(workspace):
    """A Langfuse integration (its host unreachable) that can receive signed webhook pushes;
    ``.secret`` holds its webhook secret."""
    integration = unreachable_langfuse(workspace)
    integration.secret = webhooks.regenerate_webhook_secret(integration=integration)
    return integration


def post_webhook(client, integration, payload, *, secret=None, timestamp=None, signature=None):
    """Send ``payload`` to the integration's webhook, signed as a client does unless told
    otherwise."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    if signature is None:
        signature = webhooks.sign(
            secret=secret or integration.secret, timestamp=timestamp, body=body
        )
    return client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=body,
        content_type="application/json",
        headers={"X-Iofold-Timestamp": timestamp, "X-Iofold-Signature": signature},
    )
