"""Pretraining from scratch: corpus, vocabulary, data pipeline, masking and objectives."""
