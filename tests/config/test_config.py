import pytest
import yaml

from conftest import tiny_config
from privlab.config import ConfigError, load_config, load_config_dict


def test_a_typo_in_a_key_names_it():
    cfg = tiny_config()
    cfg["targets"][1]["regime"]["parms"] = cfg["targets"][1]["regime"].pop("params")
    cfg["atacks"] = cfg.pop("attacks")
    with pytest.raises(ConfigError) as err:
        load_config_dict(cfg)
    assert "unknown key 'targets.1.regime.parms'" in str(err.value)
    assert "unknown key 'atacks'" in str(err.value)


def test_a_typo_in_a_train_override_names_it():
    cfg = tiny_config()
    cfg["targets"][0]["train"] = {"epocs": 3}
    with pytest.raises(ConfigError, match="epocs"):
        load_config_dict(cfg)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("data", "name"), "digitz", "unknown dataset 'digitz'.*digits"),
        (("model", "name"), "resnet", "unknown model 'resnet'.*mlp"),
        (("targets", 0, "regime"), "pgd", "unknown regime 'pgd'.*pgd_at"),
        (("attacks", 0, "name"), "lira_v2", "unknown attack 'lira_v2'.*confidence"),
    ],
)
def test_unknown_component_names_list_the_valid_ones(path, value, message):
    cfg = tiny_config()
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        load_config_dict(cfg)


def test_set_overrides_and_per_target_train():
    cfg = load_config_dict(
        tiny_config(),
        ["train.lr=0.01", "targets.1.train.epochs=7", "targets.0.temperature=[1, 10]"],
    )
    assert cfg.train.lr == 0.01
    assert cfg.train_for(cfg.targets[1]).epochs == 7
    assert cfg.train_for(cfg.targets[0]).epochs == 3
    assert cfg.targets[0].temperatures() == [1.0, 10.0]
    with pytest.raises(ConfigError, match="key=value"):
        load_config_dict(tiny_config(), ["train.lr"])


def test_duplicate_names_and_bad_values_are_refused():
    cfg = tiny_config()
    cfg["targets"][1]["name"] = "natural"
    with pytest.raises(ConfigError, match="unique"):
        load_config_dict(cfg)
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config_dict(tiny_config(), ["train.epochs=0"])


def test_files_missing_or_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    code = tmp_path / "code.yaml"
    code.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load: configs are data
        load_config(code)


def test_shipped_configs_are_valid():
    from pathlib import Path

    import privlab

    paths = [
        Path(privlab.__file__).parent / "configs" / "demo.yaml",
        *sorted(Path(__file__).parents[1].glob("configs/**/*.yaml")),
    ]
    assert len(paths) > 5
    kinds = set()
    for path in paths:
        cfg = load_config(path)
        kinds.add(type(cfg).__name__)
        work = (
            getattr(cfg, "targets", None)
            or getattr(cfg, "weak_adversary", None)
            or getattr(cfg, "informed_adversary", None)
            or getattr(cfg, "gradient_inversion", None)
        )
        assert work and yaml.safe_dump(cfg.model_dump(mode="json"))
    assert kinds == {
        "ExperimentConfig",
        "ReconstructionExperimentConfig",
        "GradientInversionExperimentConfig",
    }
