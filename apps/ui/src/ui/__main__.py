"""Entry point: `python -m ui`."""

from genai_platform.service import run
from ui.app import create_app
from ui.settings import UiSettings


def main() -> None:
    """Run the ui service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(UiSettings, create_app)


if __name__ == "__main__":
    main()
