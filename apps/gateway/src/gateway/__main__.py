"""Entry point: `python -m gateway`."""

from genai_platform.service import run

from gateway.app import create_app
from gateway.settings import GatewaySettings


def main() -> None:
    run(GatewaySettings, create_app)


if __name__ == "__main__":
    main()
