"""Entry point: `python -m training`."""

from genai_platform.service import run
from training.app import create_app
from training.settings import TrainingSettings


def main() -> None:
    run(TrainingSettings, create_app)


if __name__ == "__main__":
    main()
