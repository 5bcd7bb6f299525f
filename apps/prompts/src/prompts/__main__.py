"""Entry point: `python -m prompts`."""

from genai_platform.service import run
from prompts.app import create_app
from prompts.settings import PromptsSettings


def main() -> None:
    """Run the prompts service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(PromptsSettings, create_app)


if __name__ == "__main__":
    main()
