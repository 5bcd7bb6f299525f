"""One view of the system: readiness of every app, recent events, dead letters."""
