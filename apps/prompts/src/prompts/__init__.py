"""Prompt templates with immutable versions, labels and typed variables."""
