"""Entry point: `python -m inference`."""

from genai_platform.service import run
from inference.app import create_app
from inference.settings import InferenceSettings


def main() -> None:
    """Run the inference service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(InferenceSettings, create_app)


if __name__ == "__main__":
    main()
