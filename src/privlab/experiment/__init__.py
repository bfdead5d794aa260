"""Experiments: run a config, cache models, write reports."""
