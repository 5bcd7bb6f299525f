"""The single entry point: API keys, routing through Dapr, the OpenAI-compatible front door."""
