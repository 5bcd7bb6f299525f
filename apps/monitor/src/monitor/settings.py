"""Settings of the monitor service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    """The monitor service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("monitor", validation_alias="APP_ID")
    port: int = Field(8108, validation_alias="APP_PORT")
    # How many recent events and dead letters the monitor keeps to show.
    recent_events: int = Field(1000, validation_alias="MONITOR_RECENT_EVENTS", ge=10)
    # The stores the monitor reads (scripts/infra.sh starts them on these ports). Any of them
    # may be down: the monitor's answers then say which one is missing.
    prometheus_url: str = Field("http://127.0.0.1:9090", validation_alias="PROMETHEUS_URL")
    alertmanager_url: str = Field("http://127.0.0.1:9093", validation_alias="ALERTMANAGER_URL")
    victorialogs_url: str = Field("http://127.0.0.1:9428", validation_alias="VICTORIALOGS_URL")
    zipkin_url: str = Field("http://127.0.0.1:9411", validation_alias="ZIPKIN_URL")
    # Seconds to wait for one store's answer before calling it missing.
    store_timeout_seconds: float = Field(5.0, validation_alias="MONITOR_STORE_TIMEOUT", gt=0)
