"""Entry point: `python -m features`."""

from features.app import create_app
from features.settings import FeaturesSettings
from genai_platform.service import run


def main() -> None:
    """Run the features service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(FeaturesSettings, create_app)


if __name__ == "__main__":
    main()
