"""Shape checks for the credentials a user types in (form and API share them)."""

import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# What goes into an HTTP Basic header: printable ASCII, no spaces.
_KEY_BODY = re.compile(r"[\x21-\x7e]+")


@deconstructible
class LangfuseKeyValidator:
    """Check that a value looks like a Langfuse project key (`pk-lf-…` or `sk-lf-…`).

    Langfuse issues keys with these prefixes, and a self-hosted instance refuses
    predefined keys without them, so anything else is a typo or a pasted wrong value.
    """

    def __init__(self, kind: str):
        self.kind = kind  # "public" or "secret"
        self.prefix = "pk-lf-" if kind == "public" else "sk-lf-"
        self.other_prefix = "sk-lf-" if kind == "public" else "pk-lf-"

    def __call__(self, value: str) -> None:
        value = (value or "").strip()
        if value.startswith(self.other_prefix):
            other = "secret" if self.kind == "public" else "public"
            raise ValidationError(
                f"This is the {other} key; the {self.kind} key starts with {self.prefix}",
                code="swapped",
            )
        body = value.removeprefix(self.prefix)
        if body == value or not _KEY_BODY.fullmatch(body):
            raise ValidationError(
                f"A Langfuse {self.kind} key starts with {self.prefix} and has no spaces; "
                "copy it from Project settings → API keys.",
                code="invalid",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LangfuseKeyValidator) and other.kind == self.kind


validate_public_key = LangfuseKeyValidator("public")
validate_secret_key = LangfuseKeyValidator("secret")
