"""Entry point: `python -m monitor`."""

from genai_platform.service import run
from monitor.app import create_app
from monitor.settings import MonitorSettings


def main() -> None:
    run(MonitorSettings, create_app)


if __name__ == "__main__":
    main()
