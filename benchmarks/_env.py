"""Import first (before torch): make idle OpenMP threads sleep instead of spin.

On this 2-core machine another job keeps both cores busy. With libgomp's default (active)
waiting, torch's 2 intra-op threads spin on each other while the other job holds a core,
which made a 32-step MLP epoch ~35x slower (9 s instead of 0.25 s) and the timings
meaningless. ``OMP_WAIT_POLICY=PASSIVE`` removes that pathology at little cost on a quiet
machine. An explicit setting in the environment wins (``OMP_WAIT_POLICY=ACTIVE ...`` to
measure the library default).
"""

import os

if "torch" in __import__("sys").modules:  # pragma: no cover - import order guard
    raise ImportError("import _env before torch: OpenMP reads OMP_WAIT_POLICY at load time")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
