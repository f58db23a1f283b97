"""OTLP/HTTP request bodies: protobuf or JSON, optionally gzip-compressed, into the proto.

The JSON variant is the protobuf JSON mapping with one exception the OTLP spec makes:
trace and span ids are hex strings, not base64. They are turned into base64 before
``json_format.ParseDict``, which then checks every other field as protobuf would.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from iofold.lib import jsontext

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# A request body as sent, and once decompressed. The SDK's batch processor sends at most
# 512 spans a request; even with long prompts that stays well under these.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_DECODED_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
# zlib window bits per Content-Encoding: gzip framing, and zlib framing for deflate (what
# the Python exporter's Compression.Deflate sends).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class OtlpRequestError(Exception):
    """A request the receiver refuses, with the HTTP status the OTLP spec prescribes."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def media_type(content_type: str | None) -> str | None:
    """Return the body's media type if it is one OTLP/HTTP defines, else None."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return value if value in (PROTOBUF, JSON) else None


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip or deflate); refuse bodies that inflate too far."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise OtlpRequestError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none.",
            status=415,
        )
    parts, size = [], 0
    data = body
    try:
        # A gzip body may hold several members one after the other (RFC 1952), each
        # inflated in turn; anything else after the end was dropped without a word.
        while True:
            inflater = zlib.decompressobj(wbits=_WBITS[encoding])
            while data:
                # max_length bounds each step, so a small bomb cannot allocate gigabytes.
                chunk = inflater.decompress(data, _CHUNK)
                size += len(chunk)
                if size > MAX_DECODED_BYTES:
                    raise OtlpRequestError(
                        f"The body inflates past {MAX_DECODED_BYTES >> 20} MiB.", status=413
                    )
                parts.append(chunk)
                data = inflater.unconsumed_tail
            if not inflater.eof:
                raise OtlpRequestError(f"The {encoding} body is truncated.", status=400)
            data = inflater.unused_data
            if not data:
                return b"".join(parts)
            if encoding != "gzip":
                raise OtlpRequestError(f"The body has data after its {encoding} end.", status=400)
    except zlib.error:
        raise OtlpRequestError(f"The body is not valid {encoding}.", status=400) from None


def check_json_values(text: bytes, *, as_sent_limit: int) -> None:
    """Refuse JSON holding more values than a body of ``as_sent_limit`` bytes, sent
    uncompressed, can: each value takes two bytes at least (``1,``).

    Python spends some 80 bytes on a value (an empty object, and its place in a list), so
    the inflated size alone is no bound: 31 KiB of gzip inflating to 32 MiB of ``{},`` took
    a worker from 0.2 to 1.1 GB before its batch was refused. Commas and brackets inside
    strings count too, which only overestimates.
    """
    values = text.count(b",") + text.count(b"[") + text.count(b"{")
    if values > as_sent_limit // 2:
        raise OtlpRequestError(
            f"The body inflates to more JSON values ({values}) than an uncompressed body "
            f"may hold ({as_sent_limit // 2}); send a smaller batch.",
            status=413,
        )


def _hex_to_base64(value: Any, *, where: str) -> Any:
    """Return a hex id as base64; a wrong length is left for the span check to reject."""
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpRequestError(f"{where} is not a hex string.", status=400) from None
    return base64.b64encode(raw).decode()


def _fix_ids(payload: Any) -> None:
    """Rewrite the hex ids of an OTLP JSON payload in place into protobuf JSON's base64."""
    if not isinstance(payload, dict):
        raise OtlpRequestError("The body must be a JSON object.", status=400)
    for resource_spans in _list(payload.get("resourceSpans")):
        for scope_spans in _list(_dict(resource_spans).get("scopeSpans")):
            for span in _list(_dict(scope_spans).get("spans")):
                span = _dict(span)
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _hex_to_base64(span[key], where=key)
                for link in _list(span.get("links")):
                    link = _dict(link)
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = _hex_to_base64(link[key], where=f"link {key}")


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def parse(body: bytes, *, media: str) -> ExportTraceServiceRequest:
    """Decode an uncompressed body into an ``ExportTraceServiceRequest``."""
    message = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpRequestError(f"The body is not an OTLP protobuf: {exc}", status=400) from None
        return message
    check_json_values(body, as_sent_limit=MAX_BODY_BYTES)
    try:
        payload = jsontext.loads(body)
    except jsontext.UnsafeJSON as exc:
        raise OtlpRequestError(f"The body cannot be accepted: {exc}.", status=400) from None
    except ValueError:
        raise OtlpRequestError("The body is not JSON.", status=400) from None
    _fix_ids(payload)
    try:
        # Receivers must ignore fields they do not know (OTLP spec, JSON encoding).
        json_format.ParseDict(payload, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, RecursionError, ValueError) as exc:
        raise OtlpRequestError(f"The body is not OTLP JSON: {exc}", status=400) from None
    return message
