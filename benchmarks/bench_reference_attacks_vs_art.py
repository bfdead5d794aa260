"""LiRA / RMIA / Shokri (privlab, reference models) vs IBM ART's best membership attacks.

Requirement (reference-model attacks issue): "Side by side on one target: LiRA/RMIA vs ART's
best membership attack (TPR at 0.1% FPR, AUC, seconds)".

Target (default ``--dataset mnist5k``): the ``cnn_small`` of ``bench_lira_mnist5k.py``
(channels (16, 32), fc 100, 15 epochs, batch 64, Adam 1e-3, seed 0) on ``mnist5k`` seed 0
(2,000 members, 2,000 non-members, 1,000 population). mnist5k rather than digits because
its 2,000 non-members (1,000 per half) make "TPR at 0.1 % FPR" mean something: on digits
(599 non-members, 300 per half) 0.1 % FPR allows no false positive at all.
``--dataset digits`` uses the natural target of ``bench_art_comparison.py`` instead
(``mlp`` (512, 512), 100 epochs, batch 64, Adam 1e-3, seed 0).

privlab: 16 reference models trained like the target (Kerckhoffs) as one ensemble by
``get_or_train_references`` (``train_ensemble``), online pool = members + non-members +
population, each pool example IN for 8 of the 16 models; then LiRA online (per-example and
global variance), LiRA offline (per-example and global), RMIA online and offline, Shokri et
al.'s shadow-model attack (per-class networks on the same 16 models) and the I_B confidence
baseline (no reference models). None of them sees the target's membership: each is fit
from the reference models alone and scores all 2,000 members and 2,000 non-members.
Seconds = ``fit`` + scoring the 4,000 candidates; the reference-model training is listed
separately (it is shared by all of them).

ART (``adversarial-robustness-toolbox``, black-box attacks on a ``PyTorchClassifier`` of the
target, whose outputs are logits):

* ``MembershipInferenceBlackBox`` (attack model rf, gb, nn) with ART's standard protocol:
  trained on the target's *true* membership of half of the members and half of the
  non-members (the fit halves, class-stratified, split as in ``bench_art_comparison``),
  evaluated on the other halves only (1,000 + 1,000). This attacker knows half the
  membership labels, which none of the others does.
* ``ShadowModels`` + ``MembershipInferenceBlackBox`` (ART's shadow-model attack, Shokri et
  al.): ART trains 16 shadow models itself (``clone_for_refitting`` of the target's
  architecture, same optimiser, epochs and batch size, ART's own sequential training loop)
  on the same online pool privlab's reference models use (each on a random half,
  ``generate_shadow_dataset``); the attack model (rf, gb, nn) is trained on the shadow
  dataset, subsampled to ``--art-shadow-per-model`` (500) members and non-members per
  shadow model, the same budget as privlab's ``shokri`` (``per_model`` 500). Evaluated on
  all candidates, like the privlab attacks. Shadow training seconds listed separately.
* ``MembershipInferenceBlackBoxRuleBased`` (member iff correctly classified; no training):
  one binary operating point, so its AUC is its balanced accuracy and its TPR at an FPR
  below its own FPR is 0.

Two evaluations are reported: **all** (2,000 members vs 2,000 non-members) for every attack
that does not learn from the target's membership, and **eval halves** (1,000 vs 1,000) for
every attack, ART's fit-halves black-box attacks included — privlab's scores there are the
same per-example scores restricted to the eval halves (scores do not depend on which other
candidates are scored), so that table is apples to apples. TPR at 0.1 % FPR allows 2 false
positives on all, 1 on the eval halves; the 95 % Clopper-Pearson interval is in the JSON.

Usage: .venv/bin/python benchmarks/bench_reference_attacks_vs_art.py [--quick]
       [--dataset mnist5k|digits] [--models K] [--epochs E] [--art-models rf gb nn]
       [--art-shadow-models K]
(--quick: mnist5k 4 epochs / digits 30 epochs, 8 reference models, 4 ART shadow models,
ART attack model rf only.)
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    load_note,
    low_fpr_metrics,
    machine_info,
    markdown_table,
    set_threads,
    write_result,
)
from bench_art_comparison import accuracy, halves, labels
from bench_art_comparison import train_target as train_digits_target
from torch import nn

from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import Split
from privlab.metrics.membership import membership_metrics
from privlab.registry import ATTACKS, DATASETS
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import SilentProgress
from privlab.studies.targets.config import ReferenceModelsConfig
from privlab.studies.targets.reference_models import get_or_train_references
from privlab.threat_model import Access, Knowledge, Target, TargetInfo
from privlab.training.loop import TrainSpec, train

NAME = "reference_attacks_vs_art"
REQUIREMENT = (
    "informational: side by side on one target, privlab's LiRA/RMIA/Shokri (reference models) "
    "vs ART's best membership attacks — AUC, TPR at 0.1% and 1% FPR, seconds"
)
RECIPES: dict[str, dict[str, Any]] = {
    "mnist5k": {
        "model": Component(name="cnn_small", params={"channels": [16, 32], "fc": 100}),
        "epochs": 15,
        "quick_epochs": 4,
        "describe": "cnn_small channels (16, 32) fc 100",
    },
    "digits": {
        "model": Component(name="mlp", params={"hidden": [512, 512]}),
        "epochs": 100,
        "quick_epochs": 30,
        "describe": "mlp hidden (512, 512) (bench_art_comparison's natural target)",
    },
}
PRIVLAB_ATTACKS: list[tuple[str, str, dict[str, Any]]] = [
    ("lira", "LiRA online", {}),
    ("lira", "LiRA online, global var", {"variance": "global"}),
    ("lira", "LiRA offline", {"mode": "offline"}),
    ("lira", "LiRA offline, global var", {"mode": "offline", "variance": "global"}),
    ("rmia", "RMIA online", {}),
    ("rmia", "RMIA offline", {"mode": "offline"}),
    ("shokri", "Shokri shadow (privlab)", {}),
    ("confidence", "I_B confidence (no reference models)", {}),
]
FPRS = (0.1, 0.01, 0.001)


def metrics(is_member: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    m = membership_metrics(is_member, scores, fprs=FPRS)
    return {
        **low_fpr_metrics(m),
        "n_members": m["n_members"],
        "n_nonmembers": m["n_nonmembers"],
    }


class Candidates:
    """Members and non-members, each as fit half + eval half (bench_art_comparison's split)."""

    def __init__(self, members: Split, nonmembers: Split) -> None:
        self.fit_in, self.ev_in = halves(members, seed=0)
        self.fit_out, self.ev_out = halves(nonmembers, seed=1)

    def parts(self) -> list[Split]:
        """fit_in, ev_in, fit_out, ev_out: scores are computed per part."""
        return [self.fit_in, self.ev_in, self.fit_out, self.ev_out]

    def evaluate(self, part_scores: list[np.ndarray]) -> dict[str, dict[str, Any]]:
        f_in, e_in, f_out, e_out = part_scores
        return {
            "all": metrics(
                labels(len(f_in) + len(e_in), len(f_out) + len(e_out)),
                np.r_[f_in, e_in, f_out, e_out],
            ),
            "eval_halves": metrics(labels(len(e_in), len(e_out)), np.r_[e_in, e_out]),
        }


def train_target(dataset: str, bundle: Any, epochs: int) -> tuple[nn.Module, float]:
    if dataset == "digits":
        return train_digits_target(bundle, "natural", epochs)
    model = build_model(RECIPES[dataset]["model"], bundle, seed=0)
    regime = build_regime(Component(name="natural"), bundle)
    spec = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, optimizer="adam")
    result = train(model, bundle.members, regime, spec, seed=0)
    return result.model.eval(), result.seconds


def run_privlab(
    model: nn.Module,
    bundle: Any,
    info: TargetInfo,
    dataset: str,
    epochs: int,
    n_models: int,
    cand: Candidates,
    cache: Path,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    t0 = time.perf_counter()
    refs, summary = get_or_train_references(
        ReferenceModelsConfig(count=n_models, online=True, fraction=0.5),
        bundle=bundle,
        info=info,
        model_cfg=RECIPES[dataset]["model"],
        regime_cfg=Component(name="natural"),
        train_cfg=TrainConfig(epochs=epochs, batch_size=64, optimizer="adam", lr=1e-3),
        seed=0,
        device=torch.device("cpu"),
        cache_dir=cache,
        progress=SilentProgress(),
        label="bench",
    )
    ref_wall = time.perf_counter() - t0
    acc_in, acc_out = [], []
    for ref, mask in zip(refs.targets, refs.masks, strict=True):
        correct = (ref.predict(refs.pool.x) == refs.pool.y).numpy()
        acc_in.append(float(correct[mask].mean()))
        acc_out.append(float(correct[~mask].mean()))
    ref_info = {
        "count": n_models,
        "pool": len(refs.pool),
        "train_seconds": ref_wall,
        "cached": summary["cached"],
        "train_acc_mean": float(np.mean(acc_in)),
        "heldout_acc_mean": float(np.mean(acc_out)),
    }
    print(
        f"privlab: {n_models} reference models (one ensemble, pool {len(refs.pool)}) trained in "
        f"{ref_wall:.1f} s; train acc {ref_info['train_acc_mean']:.4f}, held-out acc "
        f"{ref_info['heldout_acc_mean']:.4f}"
    )
    target = Target(copy.deepcopy(model), info, Access.PROBS)
    knowledge = Knowledge(population=bundle.population, reference_models=refs)
    rows = []
    for name, label, params in PRIVLAB_ATTACKS:
        attack = ATTACKS.build(name, **params)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        attack.fit(knowledge)
        t1 = time.perf_counter()
        scores = [attack.score(target, p.x, p.y) for p in cand.parts()]
        t2 = time.perf_counter()
        uses_refs = name != "confidence"
        rows.append(
            {
                "impl": "privlab",
                "attack": label,
                "learns_from": (
                    f"{n_models} reference models (online pool)" if uses_refs else "nothing"
                ),
                "fit_s": t1 - t0,
                "score_s": t2 - t1,
                "seconds": t2 - t0,
                "model_training_s": ref_wall if uses_refs else 0.0,
                **cand.evaluate(scores),
            }
        )
        print(f"  {label:40s} {t2 - t0:6.2f} s  AUC {rows[-1]['all']['auc']:.3f}")
        sys.stdout.flush()
    return rows, ref_info


def _recipe_classifier(epochs: int, batch_size: int) -> type:
    """ART's PyTorchClassifier whose ``fit`` defaults are the target's recipe, so that
    ``ShadowModels`` (which calls ``fit(x, y)``) trains shadow models like the target."""
    from art.estimators.classification import PyTorchClassifier

    class RecipeClassifier(PyTorchClassifier):  # type: ignore[misc]
        def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
            kwargs.setdefault("batch_size", batch_size)
            kwargs.setdefault("nb_epochs", epochs)
            super().fit(x, y, **kwargs)

    return RecipeClassifier


def run_art(
    model: nn.Module,
    bundle: Any,
    dataset: str,
    epochs: int,
    cand: Candidates,
    model_types: list[str],
    n_shadow: int,
    shadow_per_model: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
        ShadowModels,
    )

    classifier = _recipe_classifier(epochs, 64)

    def make_clf(m: nn.Module) -> Any:
        return classifier(
            model=m,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(m.parameters(), lr=1e-3),
            input_shape=tuple(bundle.input_shape),
            nb_classes=bundle.num_classes,
            clip_values=(0.0, 1.0),
            device_type="cpu",
        )

    clf = make_clf(copy.deepcopy(model))

    def np_(s: Split) -> tuple[np.ndarray, np.ndarray]:
        return s.x.numpy().astype(np.float32), s.y.numpy()

    parts = [np_(p) for p in cand.parts()]
    (xf_in, yf_in), (xe_in, ye_in), (xf_out, yf_out), (xe_out, ye_out) = parts
    rows: list[dict[str, Any]] = []

    # 1. Black-box attack model trained on the target's true membership of the fit halves.
    for kind in model_types:
        np.random.seed(0)  # sklearn forests draw from the global RandomState
        torch.manual_seed(0)
        attack = MembershipInferenceBlackBox(clf, attack_model_type=kind)
        t0 = time.perf_counter()
        attack.fit(xf_in, yf_in, xf_out, yf_out)
        t1 = time.perf_counter()
        e_in = attack.infer(xe_in, ye_in, probabilities=True).ravel().astype(np.float64)
        e_out = attack.infer(xe_out, ye_out, probabilities=True).ravel().astype(np.float64)
        t2 = time.perf_counter()
        rows.append(
            {
                "impl": "ART",
                "attack": f"MembershipInferenceBlackBox ({kind}), fit halves",
                "learns_from": "target's true membership of the fit halves (1/2 of candidates)",
                "fit_s": t1 - t0,
                "score_s": t2 - t1,
                "seconds": t2 - t0,
                "model_training_s": 0.0,
                "all": None,  # trained on half of the candidates: eval halves only
                "eval_halves": metrics(labels(len(e_in), len(e_out)), np.r_[e_in, e_out]),
            }
        )
        print(f"  {rows[-1]['attack']:52s} {t2 - t0:6.2f} s")
        sys.stdout.flush()

    # 2. ART's shadow-model attack: ART trains the shadow models, then the attack model.
    pool = Split(
        torch.cat([bundle.members.x, bundle.nonmembers.x, bundle.population.x]),
        torch.cat([bundle.members.y, bundle.nonmembers.y, bundle.population.y]),
    )
    px, py = np_(pool)
    torch.manual_seed(0)
    np.random.seed(0)
    template = make_clf(build_model(RECIPES[dataset]["model"], bundle, seed=0))
    t0 = time.perf_counter()
    shadows = ShadowModels(template, num_shadow_models=n_shadow, random_state=0)
    (m_x, m_y, m_pred), (n_x, n_y, n_pred) = shadows.generate_shadow_dataset(px, py, 0.5)
    shadow_s = time.perf_counter() - t0
    # shadow models' accuracy on their own training (member) and held-out (non-member) rows
    shadow_train_acc = float((m_pred.argmax(1) == m_y).mean())
    shadow_heldout_acc = float((n_pred.argmax(1) == n_y).mean())
    rng = np.random.default_rng(0)
    k_in = rng.permutation(len(m_x))[: shadow_per_model * n_shadow]
    k_out = rng.permutation(len(n_x))[: shadow_per_model * n_shadow]
    shadow_info = {
        "count": n_shadow,
        "pool": len(pool),
        "train_seconds": shadow_s,
        "dataset_rows": {"members": len(m_x), "nonmembers": len(n_x)},
        "attack_rows_used": {"members": len(k_in), "nonmembers": len(k_out)},
        "train_acc_mean": shadow_train_acc,
        "heldout_acc_mean": shadow_heldout_acc,
    }
    print(
        f"ART: {n_shadow} shadow models (ShadowModels, sequential PyTorchClassifier.fit) trained "
        f"in {shadow_s:.1f} s; train acc {shadow_train_acc:.4f}, held-out acc "
        f"{shadow_heldout_acc:.4f}; shadow dataset {len(m_x)} + {len(n_x)} rows, attack model "
        f"on {len(k_in)} + {len(k_out)}"
    )
    for kind in model_types:
        np.random.seed(0)
        torch.manual_seed(0)
        attack = MembershipInferenceBlackBox(clf, attack_model_type=kind)
        t0 = time.perf_counter()
        attack.fit(
            m_x[k_in], m_y[k_in], n_x[k_out], n_y[k_out], pred=m_pred[k_in], test_pred=n_pred[k_out]
        )
        t1 = time.perf_counter()
        scores = [
            attack.infer(x, y, probabilities=True).ravel().astype(np.float64) for x, y in parts
        ]
        t2 = time.perf_counter()
        rows.append(
            {
                "impl": "ART",
                "attack": f"ShadowModels + MembershipInferenceBlackBox ({kind})",
                "learns_from": f"{n_shadow} ART shadow models (same online pool)",
                "fit_s": t1 - t0,
                "score_s": t2 - t1,
                "seconds": t2 - t0,
                "model_training_s": shadow_s,
                **cand.evaluate(scores),
            }
        )
        print(f"  {rows[-1]['attack']:52s} {t2 - t0:6.2f} s  AUC {rows[-1]['all']['auc']:.3f}")
        sys.stdout.flush()

    # 3. Rule-based: member iff correctly classified (binary).
    attack = MembershipInferenceBlackBoxRuleBased(clf)
    t0 = time.perf_counter()
    scores = [attack.infer(x, y).ravel().astype(np.float64) for x, y in parts]
    t1 = time.perf_counter()
    rows.append(
        {
            "impl": "ART",
            "attack": "MembershipInferenceBlackBoxRuleBased",
            "learns_from": "nothing (binary rule: correctly classified)",
            "fit_s": 0.0,
            "score_s": t1 - t0,
            "seconds": t1 - t0,
            "model_training_s": 0.0,
            **cand.evaluate(scores),
        }
    )
    return rows, shadow_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs/models, ART rf only")
    parser.add_argument("--dataset", choices=sorted(RECIPES), default="mnist5k")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--models", type=int, default=None, help="reference models (16)")
    parser.add_argument("--art-models", nargs="+", default=None, help="rf gb nn (quick: rf)")
    parser.add_argument("--art-shadow-models", type=int, default=None, help="16 (quick: 4)")
    parser.add_argument("--art-shadow-per-model", type=int, default=500)
    args = parser.parse_args(argv)
    recipe = RECIPES[args.dataset]
    epochs = args.epochs or (recipe["quick_epochs"] if args.quick else recipe["epochs"])
    n_models = args.models or (8 if args.quick else 16)
    n_shadow = args.art_shadow_models or (4 if args.quick else 16)
    art_models = args.art_models or (["rf"] if args.quick else ["rf", "gb", "nn"])
    try:
        import art
    except ImportError:
        print("ART is not installed: .venv/bin/pip install adversarial-robustness-toolbox")
        return 2

    set_threads(2)
    before = machine_info()
    bundle = DATASETS.build(args.dataset, seed=0)
    cand = Candidates(bundle.members, bundle.nonmembers)
    print(
        f"{args.dataset}: members {len(bundle.members)} (fit {len(cand.fit_in)} / eval "
        f"{len(cand.ev_in)}), non-members {len(bundle.nonmembers)} (fit {len(cand.fit_out)} / "
        f"eval {len(cand.ev_out)}), population {len(bundle.population)}; ART {art.__version__}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, load "
        f"{before['loadavg_1_5_15']}"
    )
    model, target_s = train_target(args.dataset, bundle, epochs)
    target_info = {
        "model": recipe["describe"],
        "epochs": epochs,
        "train_seconds": target_s,
        "train_acc": accuracy(model, bundle.members),
        "test_acc": accuracy(model, bundle.nonmembers),
    }
    print(
        f"target: {recipe['describe']}, {epochs} epochs in {target_s:.1f} s; train acc "
        f"{target_info['train_acc']:.4f}, test acc {target_info['test_acc']:.4f}"
    )
    info = TargetInfo(
        name="target",
        num_classes=bundle.num_classes,
        input_shape=bundle.input_shape,
        value_range=bundle.value_range,
    )
    cache = Path(tempfile.mkdtemp(prefix="bench_refs_vs_art_"))
    try:
        p_rows, ref_info = run_privlab(
            model, bundle, info, args.dataset, epochs, n_models, cand, cache
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    a_rows, shadow_info = run_art(
        model, bundle, args.dataset, epochs, cand, art_models, n_shadow, args.art_shadow_per_model
    )
    rows = p_rows + a_rows

    def table(which: str) -> str:
        body = []
        for r in rows:
            m = r[which]
            if m is None:
                continue
            body.append(
                [
                    r["impl"],
                    r["attack"],
                    f"{m['auc']:.3f}",
                    f"{m['tpr_at_0.1%_fpr']:.3f}",
                    f"{m['tpr_at_1%_fpr']:.3f}",
                    f"{r['seconds']:.2f}",
                    f"{r['model_training_s']:.1f}" if r["model_training_s"] else "—",
                    r["learns_from"],
                ]
            )
        return markdown_table(
            [
                "impl",
                "attack",
                "AUC",
                "TPR @ 0.1% FPR",
                "TPR @ 1% FPR",
                "fit + score s",
                "model training s (shared)",
                "learns from",
            ],
            body,
        )

    n_all = (len(bundle.members), len(bundle.nonmembers))
    n_half = (len(cand.ev_in), len(cand.ev_out))
    all_table, half_table = table("all"), table("eval_halves")
    legend = (
        f"'all': {n_all[0]} members vs {n_all[1]} non-members (attacks that never see the "
        f"target's membership). 'eval halves': {n_half[0]} vs {n_half[1]}, the halves ART's "
        "fit-halves black-box attacks were not trained on; every other attack's numbers there "
        "are its per-example scores restricted to the same halves (apples to apples). "
        "TPR @ 0.1% FPR allows "
        f"{int(0.001 * n_all[1])} false positive(s) on 'all', {int(0.001 * n_half[1])} on the "
        "halves. 'fit + score s': privlab fit + scoring all candidates; ART fit-halves: "
        "attack.fit on the fit halves + infer on the eval halves; ART shadow: attack.fit on the "
        "shadow dataset + infer on all candidates. 'model training s' (reference / shadow "
        "models) is paid once and shared by every attack that uses them. ART's features are "
        "the PyTorchClassifier outputs (logits) and the label. The rule-based attack is binary: "
        "its AUC is its balanced accuracy."
    )
    after = machine_info()
    note = load_note(before, after)
    print(f"\nAll candidates ({n_all[0]} + {n_all[1]}):\n{all_table}")
    print(f"\nEval halves ({n_half[0]} + {n_half[1]}):\n{half_table}")
    print(f"\n{legend}\n\n{note}")
    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": "PASS",
            "quick": args.quick,
            "dataset": args.dataset,
            "target": target_info,
            "recipe": {
                "model": recipe["describe"],
                "epochs": epochs,
                "batch_size": 64,
                "optimizer": "adam",
                "lr": 1e-3,
                "seed": 0,
            },
            "split": {
                "members": n_all[0],
                "nonmembers": n_all[1],
                "population": len(bundle.population),
                "fit_members": len(cand.fit_in),
                "fit_nonmembers": len(cand.fit_out),
                "eval_members": n_half[0],
                "eval_nonmembers": n_half[1],
            },
            "privlab_reference_models": ref_info,
            "art_shadow_models": shadow_info,
            "art_version": art.__version__,
            "art_attack_models": art_models,
            "rows": rows,
            "legend": legend,
            "markdown": {"all": all_table, "eval_halves": half_table},
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
