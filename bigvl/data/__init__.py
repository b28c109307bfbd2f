"""Data: the recaptioned example, sources, caption strategies, tokenizer and grain pipeline."""
