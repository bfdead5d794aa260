"""privlab: measure how much a trained model exposes its training data."""

__version__ = "0.1.0"
