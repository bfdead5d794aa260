"""Audit a model privlab did not train: load the user's model and data, check they fit."""
