"""The embedded Adult census data: the UCI files shipped in privlab, one-hot and standardised."""

import numpy as np
import pytest
import torch

from conftest import targets_of, tiny_config
from privlab.config import load_config_dict
from privlab.config.base import TrainConfig
from privlab.data.tabular import ADULT_COLUMNS, adult_table, decode_record, encode
from privlab.metrics.utility import accuracy
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.run.runner import run_experiment
from privlab.training.loop import train

NUMERIC = 6  # age, fnlwgt, education-num, capital-gain, capital-loss, hours-per-week


@pytest.fixture(scope="module")
def bundle():
    return DATASETS.build("adult", seed=0)


def test_the_uci_rows_and_labels():
    table = adult_table()
    assert table.x.shape == (48_842, 108) and table.x.dtype == np.float32
    assert int(table.y.sum()) == 11_687  # 23.93 % >50K (adult.names)
    assert len(table.feature_names) == 108
    assert table.feature_names[:2] == ("age", "fnlwgt")
    assert (
        "workclass=?" in table.feature_names
        and "native-country=Holand-Netherlands" in table.feature_names
    )
    complete = adult_table(drop_missing=True)
    assert complete.x.shape[0] == 45_222 and int(complete.y.sum()) == 11_208


def test_encoding_one_hot_and_standardised():
    x = adult_table().x
    assert np.isfinite(x).all()
    assert np.abs(x[:, :NUMERIC].astype(np.float64).mean(axis=0)).max() < 1e-4
    assert np.allclose(x[:, :NUMERIC].std(axis=0), 1.0, atol=1e-3)
    hot = x[:, NUMERIC:]
    assert set(np.unique(hot).tolist()) == {0.0, 1.0}
    assert (hot.sum(axis=1) == 8).all()  # one category per categorical attribute


def test_encode_small_table():
    x, names = encode([["1", "3"], ["b", "a"]], ["n", "c"], [False, True])
    assert names == ("n", "c=a", "c=b")
    assert x.tolist() == [[-1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_bundle_sizes_shape_and_range(bundle):
    assert (len(bundle.members), len(bundle.nonmembers), len(bundle.population)) == (
        10_000, 10_000, 28_842
    )  # fmt: skip
    assert bundle.input_shape == (108,) and bundle.members.x.dtype == torch.float32
    assert bundle.num_classes == 2 and bundle.class_names == ("<=50K", ">50K")
    lo, hi = bundle.value_range
    assert lo < -3 and hi > 13
    for split in (bundle.members, bundle.nonmembers, bundle.population):
        assert not torch.isnan(split.x).any()
        assert abs(split.y.float().mean().item() - 0.2393) < 0.002  # class-stratified


def test_seeded_splits(bundle):
    assert DATASETS.build("adult", seed=0).hashes() == bundle.hashes()
    assert DATASETS.build("adult", seed=1).hashes() != bundle.hashes()


def test_an_mlp_beats_the_majority_class():
    small = DATASETS.build("adult", seed=0, members=2_000, nonmembers=5_000)
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=small.input_shape, num_classes=2, hidden=[64])
    spec = TrainConfig(epochs=4, batch_size=128, lr=1e-3)
    model = train(model, small.members, REGIMES.build("natural"), spec, seed=0).model
    majority = 1 - small.nonmembers.y.float().mean().item()  # ≈ 0.76
    acc = accuracy(model, small.nonmembers.x, small.nonmembers.y)
    assert acc > majority + 0.05, (acc, majority)


def test_the_bundle_names_its_columns(bundle):
    assert bundle.feature_names == adult_table().feature_names
    assert len(bundle.feature_names) == bundle.input_shape[0]


def test_an_encoded_row_decodes_to_its_attributes():
    table = adult_table()
    record = decode_record(table.x[0].tolist(), table.feature_names)
    # adult.data's first row: 39, State-gov, 77516, Bachelors, 13, Never-married, ...
    assert list(record) == [name for name, _ in sorted(ADULT_COLUMNS, key=lambda c: c[1])]
    assert record["workclass"] == "State-gov" and record["education"] == "Bachelors"
    assert record["sex"] == "Male" and record["native-country"] == "United-States"
    assert isinstance(record["age"], float) and record["age"] == float(f"{table.x[0, 0]:.4g}")
    # a soft one-hot row decodes to its largest column; a lone "a=b" column stays a number
    assert decode_record([0.2, 0.7, 0.1, 1.0], ["c=x", "c=y", "c=z", "a=b"]) == {
        "c": "y",
        "a=b": 1.0,
    }
    with pytest.raises(ValueError, match="2 values but 1 feature names"):
        decode_record([1.0, 2.0], ["a"])


def test_the_most_exposed_members_of_an_audit_on_adult_are_named_rows(tmp_path):
    cfg = load_config_dict(
        tiny_config(
            data={"name": "adult", "params": {"members": 300, "nonmembers": 300}},
            targets=[{"name": "natural", "regime": "natural"}],
            attacks=[{"name": "loss_threshold", "label": "I_L"}],
            threat_model={"reference": "none"},
            evaluation={"adv_steps": 0},
        )
    )
    report = run_experiment(cfg, tmp_path)
    (target,) = targets_of(report)
    top = target["attacks"][0]["exposed"][0]
    assert "pixels" not in top and len(top["features"]) == len(ADULT_COLUMNS)
    relationships = [n for n in adult_table().feature_names if n.startswith("relationship=")]
    assert f"relationship={top['features']['relationship']}" in relationships
    assert "most exposed training records" in (tmp_path / "report.html").read_text()
