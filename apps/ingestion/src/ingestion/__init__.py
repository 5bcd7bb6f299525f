"""Takes documents in, cleans, deduplicates and chunks them, and publishes them."""
