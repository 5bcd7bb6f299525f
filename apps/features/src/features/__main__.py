"""Entry point: `python -m features`."""

from genai_platform.service import run

from features.app import create_app
from features.settings import FeaturesSettings


def main() -> None:
    run(FeaturesSettings, create_app)


if __name__ == "__main__":
    main()
