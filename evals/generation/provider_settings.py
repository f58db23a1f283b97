"""Which provider, model and key a workspace generates with; environment gives defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from evals.exceptions import EvalError
from evals.models import Provider, ProviderSettings
from iofold.lib import outbound
from iofold.lib.fields import UnreadableSecret, last_four
from workspaces.models import Workspace

# Leaves a setting as it is stored.
KEEP = object()

DEFAULT_MODELS = {
    Provider.OFFLINE: "synthesiser",
    Provider.OPENAI: "gpt-4.1",
    Provider.ANTHROPIC: "claude-sonnet-5-5",
}


@dataclass(frozen=True)
class ProviderChoice:
    """The resolved provider for one generation; `api_key` never leaves the process."""

    provider: str
    model: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    key_source: str = ""  # "workspace", "environment" or "" (none)

    @property
    def label(self) -> str:
        return Provider(self.provider).label

    @property
    def key_hint(self) -> str:
        return last_four(self.api_key)


def _env_key(provider: str) -> str:
    if provider == Provider.OPENAI:
        return settings.OPENAI_API_KEY
    if provider == Provider.ANTHROPIC:
        return settings.ANTHROPIC_API_KEY
    return ""


def _env_base_url(provider: str) -> str:
    if provider == Provider.OPENAI:
        return settings.OPENAI_BASE_URL
    if provider == Provider.ANTHROPIC:
        return settings.ANTHROPIC_BASE_URL
    return ""


def default_provider() -> str:
    """Return the environment's provider: the configured one, else the one with a key."""
    if settings.IOFOLD_LLM_PROVIDER:
        return settings.IOFOLD_LLM_PROVIDER
    if settings.ANTHROPIC_API_KEY:
        return Provider.ANTHROPIC
    if settings.OPENAI_API_KEY:
        return Provider.OPENAI
    return Provider.OFFLINE


def default_model(provider: str) -> str:
    """Return the model used when neither the workspace nor the environment names one."""
    if settings.IOFOLD_LLM_MODEL and provider == default_provider():
        return settings.IOFOLD_LLM_MODEL
    return DEFAULT_MODELS[provider]


def resolve_provider(*, workspace: Workspace) -> ProviderChoice:
    """Return the provider, model, base URL and key this workspace generates with.

    A workspace's own settings win field by field; a missing key or base URL falls back
    to the environment's, except that the environment's key never goes to a base URL the
    workspace chose (a server of its own would receive the operator's key). An LLM
    provider without a usable key falls back to offline, so generation always works.
    """
    row = ProviderSettings.objects.for_workspace(workspace).first()
    provider = row.provider if row else default_provider()
    if provider == Provider.OFFLINE:
        return ProviderChoice(provider=Provider.OFFLINE, model=DEFAULT_MODELS[Provider.OFFLINE])
    own_base_url = row.base_url if row and row.base_url else ""
    if row and row.api_key:
        key, source = row.api_key, "workspace"
    elif own_base_url or (row and isinstance(row.api_key, UnreadableSecret)):
        # A key of its own that no configured key decrypts: not the operator's instead.
        key, source = "", ""
    else:
        key, source = _env_key(provider), "environment"
    if not key:
        return ProviderChoice(provider=Provider.OFFLINE, model=DEFAULT_MODELS[Provider.OFFLINE])
    return ProviderChoice(
        provider=provider,
        model=(row.model if row and row.model else "") or default_model(provider),
        base_url=own_base_url or _env_base_url(provider),
        api_key=key,
        key_source=source,
    )


def get_provider_settings(*, workspace: Workspace) -> ProviderSettings:
    """Return the workspace's settings row, unsaved with environment defaults if it has none."""
    row = ProviderSettings.objects.for_workspace(workspace).first()
    if row is None:
        row = ProviderSettings(workspace=workspace, provider=default_provider())
    return row


def _clean_base_url(base_url: str) -> str:
    """Return the base URL stripped, or raise ``EvalError`` when iofold may not connect to it."""
    base_url = (base_url or "").strip()
    if base_url:
        try:
            outbound.check_url(base_url)
        except outbound.OutboundURLRefused as exc:
            raise EvalError(f"Base URL: {exc.message}") from None
    return base_url


def update_provider_settings(
    *,
    workspace: Workspace,
    provider: str,
    model: str = "",
    base_url: str = "",
    api_key: str | None = None,
    clear_key: bool = False,
    monthly_budget_usd: Decimal | None | object = KEEP,
) -> ProviderSettings:
    """Save the workspace's provider choice; `api_key=None` keeps the stored key, and
    leaving out `monthly_budget_usd` keeps the stored budget (None: no limit)."""
    if provider not in Provider.values:
        raise EvalError(f"Unknown provider “{provider}”.")
    # Before the transaction: the check may wait on DNS.
    base_url = _clean_base_url(base_url)
    with transaction.atomic():
        row = ProviderSettings.objects.for_workspace(
            workspace
        ).select_for_update().first() or ProviderSettings(workspace=workspace)
        row.provider = provider
        row.model = model.strip()
        row.base_url = base_url
        if monthly_budget_usd is not KEEP:
            row.monthly_budget_usd = monthly_budget_usd
        if clear_key:
            row.api_key = ""
        elif api_key is not None and api_key.strip():
            row.api_key = api_key.strip()
        if row.base_url and not row.api_key and provider != Provider.OFFLINE:
            raise EvalError(
                "A custom base URL needs this workspace's own API key: the server's key is "
                "only ever sent to the provider's own endpoint."
            )
        try:
            row.full_clean(exclude=["workspace"])
        except ValidationError as exc:
            messages = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise EvalError(f"Invalid provider settings: {messages}") from None
        row.save()
    return row
