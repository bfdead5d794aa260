"""Stopping at a validation accuracy (defences compared at matched accuracy)."""

import pytest
import torch

from privlab.config.base import TrainConfig
from privlab.registry import MODELS, REGIMES
from privlab.training.loop import TrainSpec, train


def _fit(bundle, **spec):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=bundle.input_shape, num_classes=4, hidden=[32])
    # model_construct: the loop's own checks, with values the config schema would refuse
    settings = TrainSpec.model_construct(**(TrainSpec().model_dump() | spec))
    return train(model, bundle.members, REGIMES.build("natural"), settings, seed=0)


def test_training_stops_at_the_first_epoch_reaching_the_accuracy(tiny):
    full = _fit(tiny, epochs=30, batch_size=32, stop_at_accuracy=1.01 - 1e-9)
    accs = [h["val_acc"] for h in full.history]
    assert len(accs) == 30 and full.summary["early_stop"]["reached"] is False
    threshold = sorted(accs)[len(accs) // 2]  # reached somewhere in the middle of training
    stopped = _fit(tiny, epochs=30, batch_size=32, stop_at_accuracy=threshold)
    first = next(i for i, a in enumerate(accs) if a >= threshold)
    assert stopped.summary["early_stop"] == {
        "epochs_trained": first + 1,
        "val_acc": accs[first],
        "reached": True,
    }
    # same seed, same batches: the stopped model is the full run's model at that epoch
    assert [h["loss"] for h in stopped.history] == [h["loss"] for h in full.history[: first + 1]]


def test_without_a_target_accuracy_nothing_is_held_out(tiny):
    plain = _fit(tiny, epochs=2, batch_size=32)
    assert "early_stop" not in plain.summary and "val_acc" not in plain.history[0]
    with pytest.raises(ValueError, match="validation"):
        _fit(tiny, epochs=2, stop_at_accuracy=0.5, validation=1.5)


def test_cache_keys_of_plain_training_do_not_change():
    plain = TrainConfig().recipe()
    assert "stop_at_accuracy" not in plain and "validation" not in plain
    assert TrainConfig(stop_at_accuracy=0.8).recipe()["validation"] == 0.2
