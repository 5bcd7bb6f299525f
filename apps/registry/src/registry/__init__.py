"""Models, versions, aliases, lineage and artifacts."""
