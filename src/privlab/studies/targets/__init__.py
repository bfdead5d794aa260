"""The targets study: training targets per seed, attacked by membership inference, model
inversion and the sensitivity analysis."""
