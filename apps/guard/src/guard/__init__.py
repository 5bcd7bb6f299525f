"""Input and output rails: injection, PII, blocklists, schema checks."""
