"""Feature engineering: embeddings, keyword statistics, vector and keyword search."""
