"""Settings of the monitor service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    app_id: str = Field("monitor", validation_alias="APP_ID")
    port: int = Field(8108, validation_alias="APP_PORT")
    # How many recent events and dead letters the monitor keeps to show.
    recent_events: int = Field(1000, validation_alias="MONITOR_RECENT_EVENTS", ge=10)
