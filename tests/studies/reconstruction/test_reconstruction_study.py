"""The reconstruction study (a ``reconstruction:`` section): config checks, an end-to-end run
through run_experiment, resume, report."""

import json
import math
import sys

import pytest

from privlab.config import ConfigError, load_config_dict
from privlab.run.runner import run_experiment
from privlab.studies.reconstruction.config import ReconstructionConfig
from privlab.studies.reconstruction.transfer import paper_tau

SECTION = {
    "weak_adversary": {
        "dataset": "digits",
        "pretrain_epochs": 2,
        "shadows": 600,
        "val_shadows": 100,
        "shard_size": 300,
        "reconstructor": {"kind": "mlp", "width": 64, "lr": 0.003, "eval_every": 50},
        "examples": 3,
        "variants": [{"name": "N=10"}, {"name": "dp eps=50", "dp": {"epsilon": 50}}],
    },
    "informed_adversary": {
        "shadows": 200,
        "victims": 20,
        "reconnn": {"epochs": 3, "width": 64},
        "head": {"hidden": 8, "sigma_init": 0.1, "lr": 0.5, "weight_decay": 0.0, "epochs": 20},
        "epsilons": [10, 1000],
        "closed_form": {"fixed": 100, "targets": 2},
    },
}
SMALL = {"name": "small_recon", "reconstruction": SECTION}


def test_reconstruction_configs_are_checked():
    cfg = load_config_dict(SMALL)
    assert isinstance(cfg.reconstruction, ReconstructionConfig)
    assert list(cfg.studies()) == ["reconstruction"]

    def section(**keys):
        return {"reconstruction": keys}

    with pytest.raises(ConfigError, match="unknown key 'reconstruction.weak_adversary.shadow'"):
        load_config_dict(section(weak_adversary={"shadow": 3}))
    with pytest.raises(
        ConfigError, match="needs weak_adversary, informed_adversary or released_model"
    ):
        load_config_dict(section())
    with pytest.raises(ConfigError, match="binary head"):
        load_config_dict(section(weak_adversary={"task": "one_vs_rest"}))
    with pytest.raises(ConfigError, match="variant names must be unique"):
        load_config_dict(section(weak_adversary={"variants": [{"name": "a"}] * 2}))
    with pytest.raises(ConfigError, match="epsilon"):
        load_config_dict(section(weak_adversary={"dp": {"epsilon": -1}}))
    with pytest.raises(ConfigError, match="kind: reconstruction` configs are gone"):
        load_config_dict({"kind": "reconstruction", **SECTION})


def test_end_to_end_run_resumes_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    cfg = load_config_dict(SMALL)
    report = run_experiment(cfg, tmp_path / "run")
    assert list(report["studies"]) == ["reconstruction"]
    (run,) = report["studies"]["reconstruction"]["runs"]
    assert run["seed"] == 0
    weak, informed = run["weak_adversary"], run["informed_adversary"]
    informed_results = json.loads(json.dumps(informed))
    assert [v["name"] for v in weak["variants"]] == ["N=10", "dp eps=50"]
    # τ as the paper defines it: the whole dataset, not the attacker's two priors
    assert weak["tau_from"] == "dataset" and weak["tau"] == pytest.approx(paper_tau("digits"))
    check = weak["variants"][0]["roc"]["theorem1"]
    assert 0 <= check["max_gap_cumulative_np"] <= 1
    plain, private = weak["variants"]
    for v in weak["variants"]:
        assert 0 <= v["fpr"] <= 1 and 0 <= v["tpr"] <= 1 and len(v["examples"]) == 3
        assert v["roc"]["fpr"][0] <= v["roc"]["fpr"][-1]
        assert 0.1 < v["utility"]["accuracy"] <= 1
    assert "privacy" not in plain and private["privacy"]["epsilon"] == pytest.approx(50, rel=0.05)
    assert private["tpr"] <= private["bound"]["tpr_bound"] + 0.02
    # the DP heads' step audited white-box: a valid lower bound, below the accountant's ε
    audit = private["dp_audit"]
    assert 0 <= audit["epsilon"] <= private["privacy"]["epsilon"] and not audit["violated"]
    assert "dp_audit" not in plain
    assert set(weak["defended_epsilon"]) == {"10"}
    assert informed["closed_form"]["exact"] == 1.0
    assert [r["known_init"] for r in informed["reconnn"]] == [True, False]
    # the DP arm trains the RecoNN arm's own MLP, and its success carries an interval
    assert all(row["head"]["hidden"] == 8 for row in informed["dp"])
    for row in informed["dp"][1:]:
        low, high = row["success_ci"]
        assert low <= row["nn_oracle_success"] <= high and row["victims"] == 20
        assert row["bound_violated"] is False and "detectable_rate" in row
    for row in informed["dp"][1:]:  # the first row is the non-private reference
        # both are valid bounds (Thm 2 over the RDP curve; κe^ε + δ for (ε, δ)-DP)
        assert row["nn_oracle_success"] <= min(row["gamma"], row["gamma_dp"]) + 0.05
        kappa_e_eps = math.exp(min(0.0, math.log(1 / 1198) + row["epsilon_spent"]))
        assert row["gamma_dp"] >= kappa_e_eps
    html = (tmp_path / "run" / "report.html").read_text()
    for text in ("Weak adversary", "Informed adversary", "ReRo bound", "figure"):
        assert text in html
    assert "figure unavailable" not in html
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    (saved_run,) = saved["studies"]["reconstruction"]["runs"]
    assert saved["schema_version"] == 2 and saved_run["weak_adversary"]["tau"] == weak["tau"]
    # resume: every unit comes from state/, nothing is trained again
    from privlab.registry import ATTACKS

    def boom(*a, **k):
        raise AssertionError("retrained a finished unit")

    monkeypatch.setattr(ATTACKS.get("weak_adversary"), "fit", boom)  # the reconstructor
    monkeypatch.setattr(ATTACKS.get("reconnn"), "fit", boom)
    again = run_experiment(cfg, tmp_path / "run")
    (again_run,) = again["studies"]["reconstruction"]["runs"]
    assert again_run["weak_adversary"]["variants"] == weak["variants"]
    assert again_run["informed_adversary"] == informed_results


def test_success_against_the_rero_bound_is_a_test_that_can_fail():
    from scipy.stats import beta

    from privlab.studies.reconstruction.informed import bound_check

    # independent: the Clopper–Pearson lower bound is the 2.5 % quantile of Beta(k, n − k + 1)
    def lower(k: int, n: int) -> float:
        return 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))

    check = bound_check(0.02, 100, gamma=0.05)
    assert check["bound_violated"] is False
    first = next(k for k in range(101) if lower(k, 100) > 0.05)
    assert check["detectable_rate"] == pytest.approx(first / 100)
    assert bound_check(first / 100, 100, gamma=0.05)["bound_violated"] is True
    assert bound_check(0.0, 5, gamma=0.9)["detectable_rate"] is None  # 5 victims cannot fail it


def test_shadow_shards_can_be_dropped_once_a_variant_is_stored(tmp_path, monkeypatch):
    """...but not while a variant uses them: another run sharing the cache entry (the same
    validation heads) that finishes meanwhile must leave them (it once deleted a running
    Table 1's heads)."""
    from privlab.run.files import remove_unless_used
    from privlab.studies.reconstruction import weak as weak_study

    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    removed: list[bool] = []
    null_law = weak_study._null_law

    def another_run_finishes_meanwhile(heads, job_key, cache):
        removed.append(remove_unless_used(weak_study.shadow_dir(cache, job_key)))
        return null_law(heads, job_key, cache)

    monkeypatch.setattr(weak_study, "_null_law", another_run_finishes_meanwhile)
    weak = {
        **SECTION["weak_adversary"],
        "shadows": 300,
        "val_shadows": 60,
        "keep_shadows": False,
        "variants": [{"name": "N=10"}],
    }
    report = run_experiment(
        load_config_dict({"name": "drop", "reconstruction": {"weak_adversary": weak}}),
        tmp_path / "r",
    )
    (variant,) = report["studies"]["reconstruction"]["runs"][0]["weak_adversary"]["variants"]
    assert 0 <= variant["tpr"] <= 1
    assert removed == [sys.platform == "win32"]  # no flock there: a single run per cache
    shards = tmp_path / "cache" / "shadow_heads"
    assert not shards.exists() or not any(p.is_dir() for p in shards.iterdir())  # 10 GB/1M heads


def test_the_reconstructor_precision_enters_a_variants_key_only_when_not_the_default():
    """Runs stored before the option existed keep their state/ keys."""
    from types import SimpleNamespace

    from privlab.studies.reconstruction.weak import _variant_key, variant_settings

    priors = SimpleNamespace(sha256={"train": "a", "val": "b"}, tau=0.1, extractor_sha256="c")

    def key(**recon):
        cfg = load_config_dict(
            {"name": "k", "reconstruction": {"weak_adversary": {"reconstructor": recon}}}
        ).reconstruction.weak_adversary
        v = cfg.resolved_variants()[0]
        return json.dumps(_variant_key(cfg, 0, priors, variant_settings(cfg, v)))

    default, mixed = key(kind="residual"), key(kind="residual", precision="bfloat16")
    assert "precision" not in default and "bfloat16" in mixed
    assert key(kind="residual", precision="float32") == default
    with pytest.raises(ConfigError, match="precision"):
        key(precision="half")


def test_a_stop_during_the_evaluation_keeps_the_fit_for_the_resume(tmp_path, monkeypatch):
    """The fit's checkpoint outlives the fit until the variant's result is complete: a run
    stopped while it evaluates the reconstructor resumes after the fit (a fit on a million
    heads takes hours), and the checkpoint goes once the result is complete."""
    from privlab.attacks.reconstruction.weak_adversary import WeakAdversary
    from privlab.studies.reconstruction import weak as weak_study

    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    evaluate = weak_study.evaluate_reconstructor

    def stopped(*a, **k):
        raise KeyboardInterrupt

    cfg = load_config_dict(
        {
            "name": "stop",
            "reconstruction": {
                "weak_adversary": {
                    **SECTION["weak_adversary"],
                    "reconstructor": {
                        **SECTION["weak_adversary"]["reconstructor"],
                        "eval_every": 5,
                    },
                    "variants": [{"name": "N=10"}],
                }
            },
        }
    )
    monkeypatch.setattr(weak_study, "evaluate_reconstructor", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "r")
    checkpoints = tmp_path / "cache" / "reconstructors"
    assert len(list(checkpoints.glob("*.safetensors"))) == 1
    steps: list[int] = []
    step = WeakAdversary._step

    def counted(self, *a, **k):
        steps.append(1)
        return step(self, *a, **k)

    monkeypatch.setattr(weak_study, "evaluate_reconstructor", evaluate)
    monkeypatch.setattr(WeakAdversary, "_step", counted)
    report = run_experiment(cfg, tmp_path / "r")
    (variant,) = report["studies"]["reconstruction"]["runs"][0]["weak_adversary"]["variants"]
    assert variant["steps"] > 0 and len(steps) <= 5  # at most one check's steps again
    assert not list(checkpoints.glob("*.safetensors"))
