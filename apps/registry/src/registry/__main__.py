"""Entry point: `python -m registry`."""

from genai_platform.service import run
from registry.app import create_app
from registry.settings import RegistrySettings


def main() -> None:
    """Run the registry service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(RegistrySettings, create_app)


if __name__ == "__main__":
    main()
