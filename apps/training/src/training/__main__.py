"""Entry point: `python -m training`."""

import os

# Before gRPC loads (the workflow SDK's worker): with gRPC's fork handlers on, a worker process
# forked while the workflow runtime's threads call into gRPC died by SIGSEGV before it could
# exec. Workers are exec'd at once and use no gRPC, so the handlers have nothing to protect.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from genai_platform.service import run  # noqa: E402
from training.app import create_app  # noqa: E402
from training.settings import TrainingSettings  # noqa: E402


def main() -> None:
    """Run the training service: settings from the environment, JSON logs, uvicorn on APP_PORT."""
    run(TrainingSettings, create_app)


if __name__ == "__main__":
    main()
