import pytest
import yaml

from conftest import tiny_config
from privlab.config import ConfigError, load_config, load_config_dict


def test_a_typo_in_a_key_names_it():
    cfg = tiny_config()
    section = cfg["targets"]
    section["targets"][1]["regime"]["parms"] = section["targets"][1]["regime"].pop("params")
    section["atacks"] = section.pop("attacks")
    cfg["sede"] = 1
    with pytest.raises(ConfigError) as err:
        load_config_dict(cfg)
    assert "unknown key 'targets.targets.1.regime.parms'" in str(err.value)
    assert "unknown key 'targets.atacks'" in str(err.value)
    assert "unknown key 'sede'" in str(err.value)


def test_a_typo_in_a_train_override_names_it():
    cfg = tiny_config()
    cfg["targets"]["targets"][0]["train"] = {"epocs": 3}
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
    node = cfg["targets"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        load_config_dict(cfg)


def test_set_overrides_and_per_target_train():
    cfg = load_config_dict(
        tiny_config(),
        [
            "targets.train.lr=0.01",
            "targets.targets.1.train.epochs=7",
            "targets.targets.0.temperature=[1, 10]",
            "seed=3",
        ],
    )
    section = cfg.targets
    assert section.train.lr == 0.01
    assert section.train_for(section.targets[1]).epochs == 7
    assert section.train_for(section.targets[0]).epochs == 3
    assert section.targets[0].temperatures() == [1.0, 10.0]
    assert cfg.seed == 3 and cfg.run_seeds() == [3]
    with pytest.raises(ConfigError, match="key=value"):
        load_config_dict(tiny_config(), ["targets.train.lr"])


def test_duplicate_names_and_bad_values_are_refused():
    cfg = tiny_config()
    cfg["targets"]["targets"][1]["name"] = "natural"
    with pytest.raises(ConfigError, match="unique"):
        load_config_dict(cfg)
    with pytest.raises(ConfigError, match="targets.train.epochs"):
        load_config_dict(tiny_config(), ["targets.train.epochs=0"])
    # a negative seed is refused by name, not by numpy deep inside a run
    with pytest.raises(ConfigError, match=r"\bseed: .*greater than or equal to 0"):
        load_config_dict(tiny_config(), ["seed=-1"])
    with pytest.raises(ConfigError, match=r"seeds\.1: .*greater than or equal to 0"):
        load_config_dict(tiny_config(), ["seeds=[0, -2]"])


def test_files_missing_or_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML, line 1, column \d+: ") as err:
        load_config(bad)
    assert "\n" not in str(err.value)
    undecodable = tmp_path / "latin1.yaml"
    undecodable.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid YAML, not UTF-8 text"):
        load_config(undecodable)
    code = tmp_path / "code.yaml"
    code.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load: configs are data
        load_config(code)


def test_shipped_configs_are_valid():
    from pathlib import Path

    import privlab

    paths = [
        Path(privlab.__file__).parent / "configs" / "demo.yaml",
        *sorted(Path(__file__).parents[2].glob("configs/**/*.yaml")),
    ]
    assert len(paths) > 5
    studies = set()
    for path in paths:
        cfg = load_config(path)
        assert cfg.studies(), path
        studies |= set(cfg.studies())
        assert yaml.safe_dump(cfg.model_dump(mode="json"))
    assert studies == {"targets", "reconstruction", "gradient_inversion"}


def test_a_config_without_a_study_section_names_the_studies():
    with pytest.raises(ConfigError, match="no study section.*targets"):
        load_config_dict({"name": "empty"})


def test_old_configs_are_refused_with_how_to_rewrite_them_and_migrate(tmp_path):
    from privlab.config.migrate import migrate_dict

    old = {"name": "tiny", **tiny_config()["targets"]}  # the targets' keys at the top level
    with pytest.raises(ConfigError, match="under a `targets:` section.*migrate-config"):
        load_config_dict(old)
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=f"migrate-config {path}"):
        load_config(path)
    assert load_config_dict(migrate_dict(old)) == load_config_dict(tiny_config())
    for kind in ("reconstruction", "gradient_inversion"):
        with pytest.raises(ConfigError, match=f"kind: {kind}` configs are gone"):
            load_config_dict({"kind": kind, "name": "x"})
