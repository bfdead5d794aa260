"""privlab: measure how much a trained model exposes its training data."""

import os

# Idle OpenMP threads that spin-wait make torch 3–37× slower on a busy 2-core machine
# (benchmarks/README.md); sleeping is the better default here. Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
