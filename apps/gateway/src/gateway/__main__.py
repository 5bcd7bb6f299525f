"""Entry point: `python -m gateway`."""

from gateway.app import create_app
from gateway.settings import GatewaySettings
from genai_platform.service import run


def main() -> None:
    """Run the gateway service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(GatewaySettings, create_app)


if __name__ == "__main__":
    main()
