"""Fine-tuning jobs: LoRA and full, checkpointed and resumable."""
