"""Entry point: `python -m features`."""

from features.app import create_app
from features.settings import FeaturesSettings
from genai_platform.service import run


def main() -> None:
    run(FeaturesSettings, create_app)


if __name__ == "__main__":
    main()
