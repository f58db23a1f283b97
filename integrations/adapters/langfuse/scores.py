"""Score batches for ``POST /api/public/scores``: encoded once, measured in bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator

from langfuse.api.core.datetime_utils import serialize_datetime
from langfuse.api.core.jsonable_encoder import jsonable_encoder

from integrations.adapters.base import ScoreIn, as_utc

SCORE_BATCH = 100
SCORE_BATCH_BYTES = 900_000  # under the 1 MiB body limit of the scores route


def score_batches(scores: list[ScoreIn]) -> Iterator[tuple[int, bytes]]:
    """Yield (score count, JSON array body) batches of at most SCORE_BATCH scores and bytes."""
    parts: list[bytes] = []
    size = 2  # the array's brackets
    for score in scores:
        item = {
            "id": score.id,
            # One subject per score: the session for a conversation's verdict, else the trace.
            "traceId": None if score.session_id else score.trace_id,
            "sessionId": score.session_id,
            "observationId": None if score.session_id else score.observation_id,
            "name": score.name,
            "value": 1.0 if score.value else 0.0,
            "dataType": "BOOLEAN",
            "comment": score.comment,
            "environment": score.environment,
            "metadata": score.metadata,
            "timestamp": serialize_datetime(as_utc(score.timestamp)) if score.timestamp else None,
        }
        # Each score is encoded once: the bytes that measure the batch are the bytes sent.
        # Metadata values JSON cannot encode (dates, UUIDs, ...) go the way the SDK sends them.
        part = json.dumps(
            {k: v for k, v in item.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
            default=jsonable_encoder,
        ).encode()
        if parts and (len(parts) >= SCORE_BATCH or size + len(part) + 1 > SCORE_BATCH_BYTES):
            yield len(parts), b"[" + b",".join(parts) + b"]"
            parts, size = [], 2
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield len(parts), b"[" + b",".join(parts) + b"]"
