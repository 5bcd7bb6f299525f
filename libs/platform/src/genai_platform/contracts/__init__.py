"""Answers that cross a service boundary, one pydantic model each, shared by sender and receiver.

The service that answers declares these as its routes' response models; its callers parse the
answer with the same model (through the typed clients), so the two cannot drift. One module per
service answering: `registry`, `guard`, `search` (features), `prompts`; and `documents`, the size
limits every service that handles an upload shares.
"""
