"""Settings of the guard service."""

from pathlib import Path

from pydantic import Field

from genai_platform.settings import ServiceSettings


class GuardSettings(ServiceSettings):
    """The guard service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("guard", validation_alias="APP_ID")
    port: int = Field(8107, validation_alias="APP_PORT")
    # A policy file of your own; the one shipped beside the code (guard/policy.yaml) otherwise.
    policy_path: Path | None = Field(None, validation_alias="GUARD_POLICY_PATH")
    # Texts longer than this are checked on a worker thread, so the event loop keeps answering.
    inline_check_chars: int = Field(20_000, validation_alias="GUARD_INLINE_CHECK_CHARS", ge=0)
