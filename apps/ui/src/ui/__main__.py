"""Entry point: `python -m ui`."""

from genai_platform.service import run
from ui.app import create_app
from ui.settings import UiSettings


def main() -> None:
    run(UiSettings, create_app)


if __name__ == "__main__":
    main()
