"""Entry point: `python -m gateway`."""

from gateway.app import create_app
from gateway.settings import GatewaySettings
from genai_platform.service import run


def main() -> None:
    run(GatewaySettings, create_app)


if __name__ == "__main__":
    main()
