"""Entry point: `python -m monitor`."""

from genai_platform.service import run
from monitor.app import create_app
from monitor.settings import MonitorSettings


def main() -> None:
    """Run the monitor service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(MonitorSettings, create_app)


if __name__ == "__main__":
    main()
