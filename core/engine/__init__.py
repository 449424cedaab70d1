"""Checkpoint → run: formats and safe loading, architectures, data, preprocessing, inference,
evaluation."""
