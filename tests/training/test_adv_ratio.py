"""Song et al.'s adv-train ratio (Table 5, §5.2.2): a fixed subset of the training points gets
the robust loss for the whole training, the same points in every epoch; the per-batch form
(the first r·B of every shuffled batch) reaches nearly every point."""

from __future__ import annotations

import pytest
import torch

from privlab.registry import MODELS, REGIMES
from privlab.training import ensembles
from privlab.training.loop import TrainSpec, train
from privlab.training.regimes import pgd_at


def _perturbed_per_epoch(tiny, monkeypatch, **params) -> tuple[list[set[int]], int]:
    """The training points handed to PGD in each epoch (points told apart by their pixels)."""
    rows = {tuple(x.flatten().tolist()): i for i, x in enumerate(tiny.members.x)}
    seen: list[int] = []
    real = pgd_at.pgd

    def spy(model, x, y, **kw):
        seen.extend(rows[tuple(r.flatten().tolist())] for r in x)
        return real(model, x, y, **kw)

    monkeypatch.setattr(pgd_at, "pgd", spy)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=(16,))
    regime = REGIMES.build("pgd_at", eps=0.1, steps=1, adv_ratio=0.5, **params)
    epochs, n = 3, len(tiny.members)
    train(model, tiny.members, regime, TrainSpec(epochs=epochs, batch_size=32), seed=0)
    per_epoch = len(seen) // epochs
    return [set(seen[e * per_epoch : (e + 1) * per_epoch]) for e in range(epochs)], n


def test_a_fixed_subset_gets_the_robust_loss_in_every_epoch(tiny, monkeypatch):
    epochs, n = _perturbed_per_epoch(tiny, monkeypatch)
    assert all(e == epochs[0] for e in epochs)  # the same points every epoch
    assert len(epochs[0]) == round(0.5 * n)
    assert len(set().union(*epochs)) == round(0.5 * n)  # the other half never


def test_the_per_batch_form_reaches_nearly_every_point(tiny, monkeypatch):
    epochs, n = _perturbed_per_epoch(tiny, monkeypatch, adv_subset="batch")
    assert len(set().union(*epochs)) > 0.8 * n


def test_the_subset_follows_the_seed_and_is_not_vectorised(tiny):
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=(16,))
    subsets = []
    for seed in (0, 0, 1):
        regime = REGIMES.build("pgd_at", eps=0.1, steps=1, adv_ratio=0.25)
        train(model, tiny.members, regime, TrainSpec(epochs=1, batch_size=64), seed=seed)
        subsets.append(regime.robust_points())
    assert torch.equal(subsets[0], subsets[1]) and not torch.equal(subsets[0], subsets[2])
    assert int(subsets[0].sum()) == round(0.25 * len(tiny.members))
    reason = ensembles.can_vectorise(model, REGIMES.build("pgd_at", adv_ratio=0.25))
    assert reason is not None and "fixed adv-train subset" in reason
    assert ensembles.can_vectorise(model, REGIMES.build("pgd_at", adv_ratio=1.0)) is None
    with pytest.raises(ValueError):
        REGIMES.build("pgd_at", adv_ratio=0.5, adv_subset="sometimes")
