"""Entry point: `python -m ingestion`."""

from genai_platform.service import run
from ingestion.app import create_app
from ingestion.settings import IngestionSettings


def main() -> None:
    """Run the ingestion service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(IngestionSettings, create_app)


if __name__ == "__main__":
    main()
