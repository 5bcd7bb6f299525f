"""Entry point: `python -m guard`."""

from genai_platform.service import run
from guard.app import create_app
from guard.settings import GuardSettings


def main() -> None:
    """Run the guard service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(GuardSettings, create_app)


if __name__ == "__main__":
    main()
