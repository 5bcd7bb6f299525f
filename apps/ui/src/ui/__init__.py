"""The web front end: chat, documents, jobs, models, prompts and system health."""
