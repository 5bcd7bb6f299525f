"""Fine-tuning jobs: LoRA and full, checkpointed and resumable."""

from fastapi import FastAPI

from genai_platform.service import create_service
from training.settings import TrainingSettings


def create_app(settings: TrainingSettings) -> FastAPI:
    return create_service(settings, title="Training", description=__doc__)
