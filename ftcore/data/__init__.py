"""Data: tokenizer, sources, encoded datasets and batching."""
