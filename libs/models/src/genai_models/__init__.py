"""Model files the services share (torch is imported only where a model is converted)."""
