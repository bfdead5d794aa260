"""Effective sparsity of pruning: the share of the update's entries that are zero before and
after the defence, beside p in the report (on image data much of the gradient is zero already,
so a pruning rate below that share changes nothing)."""

import pytest
import torch

from privlab.config import load_config_dict
from privlab.federated.observation import GradientObservation
from privlab.run.progress import SilentProgress
from privlab.run.store import StateDir
from privlab.studies.gradient_inversion import run as gi
from privlab.studies.gradient_inversion.report import points_table
from privlab.studies.gradient_inversion.sparsity import update_sparsity, zero_fraction

TINY = {
    "data": "digits",
    "model": {"name": "mlp", "params": {"hidden": [8]}},
    "clients": [{"batch_size": 2}],
    "batches": 2,
    "examples": 0,
    "attacks": [
        {"name": "inverting_gradients", "label": "IG", "params": {"iterations": 2, "restarts": 1}}
    ],
    "defences": ["none", {"name": "pruning", "sweep": {"p": [0.2, 0.9]}}],
    "utility": None,
}


def _obs(*tensors):
    return GradientObservation(
        gradients={f"p{i}": torch.tensor(t, dtype=torch.float32) for i, t in enumerate(tensors)},
        batch_size=1,
    )


def test_zero_fractions_count_every_entry_together():
    assert zero_fraction(_obs([0.0, 1.0, 0.0, 2.0], [0.0]).gradients) == pytest.approx(3 / 5)
    out = update_sparsity(
        [_obs([0.0, 1.0, 2.0, 3.0]), _obs([0.0, 0.0, 2.0, 3.0])],
        [_obs([0.0, 0.0, 0.0, 3.0]), _obs([0.0, 0.0, 0.0, 3.0])],
    )
    assert out["zero_fraction_before"] == pytest.approx(0.375)  # (1/4 + 2/4) / 2
    assert out["zero_fraction_after"] == pytest.approx(0.75)
    assert out["effective"] == pytest.approx((0.75 - 0.375) / 0.625)
    assert update_sparsity([_obs([0.0])], [_obs([0.0])])["effective"] is None
    with pytest.raises(ValueError, match="as many"):
        update_sparsity([_obs([1.0])], [])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sparsity")
    cfg = load_config_dict({"name": "tiny", "gradient_inversion": TINY}).gradient_inversion
    try:
        return gi.run_gradient_inversion_study(
            cfg, 0, state=StateDir(out), cache=out / "cache", progress=SilentProgress()
        )
    finally:
        torch.set_num_threads(before)


def test_every_point_records_zeros_before_and_after_the_defence(pruned):
    points = {p["label"]: p["sparsity"] for p in pruned["settings"][0]["points"]}
    clear = points["none"]
    # digits' blank border pixels and the ReLU's dead units: the raw update is sparse already
    assert clear["zero_fraction_before"] > 0.2
    assert clear["zero_fraction_after"] == clear["zero_fraction_before"]
    weak, strong = points["pruning p=0.2"], points["pruning p=0.9"]
    # pruning 20 % of the entries removes nothing that was not zero already
    assert weak["zero_fraction_before"] == clear["zero_fraction_before"]
    assert weak["zero_fraction_after"] == weak["zero_fraction_before"] and weak["effective"] == 0
    # p = 0.9 keeps 10 % of the entries: 90 % zero after, of which only part is its doing
    assert strong["zero_fraction_after"] == pytest.approx(0.9, abs=0.01)
    assert 0 < strong["effective"] < 0.9


def test_the_table_shows_the_zeros_beside_the_defence(pruned):
    header, rows = points_table({"gradient_inversion": pruned})
    assert header[1:3] == ["defence", "zeros % before→after"]
    cells = {row[1]: row[2] for row in rows}
    sparsity = pruned["settings"][0]["points"][2]["sparsity"]
    before = 100 * sparsity["zero_fraction_before"]
    assert cells["pruning p=0.9"] == f"{before:.1f}→{100 * sparsity['zero_fraction_after']:.1f}"
    assert cells["pruning p=0.2"] == f"{before:.1f}→{before:.1f}"
    # a report written before sparsity was recorded still renders, with —
    old = {"attacks": ["IG"], "settings": [dict(pruned["settings"][0])]}
    old["settings"][0]["points"] = [
        {k: v for k, v in p.items() if k != "sparsity"} for p in pruned["settings"][0]["points"]
    ]
    _, rows = points_table({"gradient_inversion": old})
    assert {row[2] for row in rows} == {"—"}
