"""The precomputed-scores study: membership metrics of scores computed outside privlab."""
