"""An audit as an experiment whose target is given, not trained: the config that
``privlab audit`` (and :func:`privlab.audit`) runs, with the membership attacks the access and
the data allow, and a line for every attack left out saying why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privlab.config.base import TrainConfig
from privlab.config.yaml_text import parse_yaml, read_yaml_file
from privlab.registry import ATTACKS
from privlab.threat_model import Access

BLACK_BOX = ("labels", "probs", "logits", "loss")
WHITE_BOX = (*BLACK_BOX, "input_gradients", "weights", "param_gradients")
SHORTHANDS = {"black-box": BLACK_BOX, "white-box": WHITE_BOX}
#: what an attack is shown as in the report
LABELS = {
    "loss_threshold": "loss",
    "confidence": "I_B",
    "adversarial_confidence": "I_A",
    "gap": "gap (label-only)",
    "boundary_distance": "boundary (label-only)",
    "augmentation_labels": "augmentation (label-only)",
}
#: answers that carry more than the label: where one is granted, the label-only attacks run
#: only when asked for (they are costlier and no stronger than the attacks these allow)
SCORES = Access.PROBS | Access.LOGITS | Access.LOSS


def expand_access(names: list[str]) -> list[str]:
    """Access names with the ``black-box`` / ``white-box`` shorthands expanded (validated)."""
    out: list[str] = []
    for name in names:
        for part in SHORTHANDS.get(name.strip().lower(), (name.strip().lower(),)):
            if part not in out:
                out.append(part)
    Access.parse(out)  # an unknown name is a ValueError listing the valid ones
    return out


def on_backend(
    data: dict[str, Any], backend: str | None, address: str | None, *, trainer: str | None
) -> dict[str, Any]:
    """An audit config run on ``backend`` (None: the default, here). The user's training
    function lives in this process only: it cannot train on Ray."""
    if backend is None and address is None:
        return data
    if trainer is not None and backend == "ray":
        raise ValueError(
            "train_fn trains in this process only and cannot run on Ray: give a training recipe"
        )
    return data | {k: v for k, v in (("backend", backend), ("address", address)) if v}


@dataclass(frozen=True)
class AuditPlan:
    """The user's inputs of one audit (paths, access, attacks, training recipe or function)."""

    model: str
    members: str
    nonmembers: str
    weights: str | None = None
    population: str | None = None
    label_column: str | None = None
    #: the names of the columns of 1-D inputs (the report's rows of most exposed records)
    feature_names: list[str] | None = None
    access: list[str] = field(default_factory=lambda: list(BLACK_BOX))
    attacks: list[str] | None = None
    recipe: dict[str, Any] | None = None
    #: ``memory-trainer:<key>``: the user's train_fn (privlab.audit), trains in place of a recipe
    trainer: str | None = None
    #: federated defences the gradient-inversion audit compares: DEFENCES names or
    #: ``{name, params, sweep}`` entries (config.base.Swept)
    defences: list[Any] = field(default_factory=lambda: ["none"])
    name: str = "audit"
    seed: int = 0

    @property
    def model_recipe(self) -> dict[str, Any] | None:
        """How the whole model was trained: the recipe without its ``head`` block (which only
        tells the weak adversary how a head on frozen features was trained)."""
        if self.recipe is None or set(self.recipe) == {"head"}:
            return None
        return {k: v for k, v in self.recipe.items() if k != "head"}

    @property
    def can_train(self) -> bool:
        """Shadow and reference models need the recipe (or the user's training function), the
        model's code and attacker data."""
        return (
            (self.model_recipe is not None or self.trainer is not None)
            and self.population is not None
            and not self.model.endswith(".pt2")
        )

    def why_not_train(self) -> str:
        if self.model.endswith(".pt2"):
            return "an exported program cannot be re-trained (give FILE.py:NAME)"
        if self.model_recipe is None and self.trainer is None:
            return (
                "it trains models like yours: give the training recipe (--train RECIPE.yaml; "
                "privlab.audit: recipe= or train_fn=)"
            )
        return "it trains models on the attacker's own data: give --population"


def membership_attacks(plan: AuditPlan) -> tuple[list[dict[str, Any]], list[str]]:
    """The membership attacks to run and one line per attack left out, saying why. Attacks
    the user named of which none can run are a ValueError saying why (not an audit without
    them)."""
    access = Access.parse(expand_access(plan.access))
    names = plan.attacks or [
        n for n in ATTACKS.names() if getattr(ATTACKS.get(n), "family", "") == "membership"
    ]
    chosen, skipped = [], []
    for name in names:
        attack = ATTACKS.build(name)
        if getattr(attack, "family", "") != "membership":
            skipped.append(f"{name}: not a membership attack (the audit runs membership)")
            continue
        missing = attack.requires & ~access
        if missing:
            skipped.append(f"{name}: needs access {missing.names()} (--access)")
        elif attack.requires == Access.LABELS and access & SCORES and plan.attacks is None:
            skipped.append(
                f"{name}: label-only, run when the access is labels alone (the access here "
                "gives scores, which the other attacks use; name it in --attacks to run it)"
            )
        elif name == "verified_confidence":
            skipped.append(f"{name}: needs a verifiable model trained for a budget")
        elif (attack.needs_reference or attack.needs_reference_models) and not plan.can_train:
            skipped.append(f"{name}: {plan.why_not_train()}")
        else:
            chosen += _variants(name, attack)
    if plan.attacks and not chosen:
        raise ValueError(f"none of the attacks asked for can run: {'; '.join(skipped)}")
    return chosen, skipped


def _variants(name: str, attack: Any) -> list[dict[str, Any]]:
    """The attack as the audit runs it: an attack with online and offline modes (LiRA, RMIA)
    runs in both, from the same reference models (the offline one uses only the models each
    candidate is OUT of, as an attacker without the candidates in its pool would)."""
    label = LABELS.get(name, name)
    if getattr(attack, "mode", None) != "online":
        return [{"name": name, "label": label}]
    return [
        {"name": name, "label": f"{label} (online)", "params": {"mode": "online"}},
        {"name": name, "label": f"{label} (offline)", "params": {"mode": "offline"}},
    ]


def _input_shape(path: str, label_column: str | None) -> tuple[int, ...]:
    from privlab.auditing.data_loading import load_user_data

    return tuple(load_user_data(path, label_column=label_column).x.shape[1:])


def dp_audit_block(plan: AuditPlan) -> dict[str, Any]:
    """A DP recipe's audit: the white-box audit of its DP-SGD step at the promised settings,
    and, where privlab can train the recipe (a population and the model's code), a run of it
    with up to 1,000 of the population's images as mislabelled canaries."""
    canaries = 0
    if plan.population is not None and plan.can_train and plan.trainer is None:
        from privlab.auditing.data_loading import load_user_data

        pool = len(load_user_data(plan.population, label_column=plan.label_column).y)
        canaries = min(1000, pool)
    return {"canaries": canaries}


def check_audit_options(with_scores: bool, **model_options: str | None) -> None:
    """An audit takes precomputed scores, or a model with its members and non-members: not
    both, not part of either (a ConfigError naming the options)."""
    from privlab.config.schema import ConfigError

    given = [f"--{name}" for name, value in model_options.items() if value is not None]
    missing = [f"--{name}" for name, value in model_options.items() if value is None]
    if with_scores and given:
        raise ConfigError(f"--scores audits precomputed scores: drop {', '.join(given)}")
    if not with_scores and missing:
        raise ConfigError(
            "give --scores FILE, or --model, --members and --nonmembers "
            f"(missing {', '.join(missing)})"
        )


_PARAM = re.compile(r"\s*(\w+)\s*=\s*(\[[^\]]*\]|[^,\[\]]+)\s*(?:,|$)")


def parse_defence(text: str) -> dict[str, Any]:
    """``NAME`` or ``NAME:K=V,K=V`` (a value ``[V1,V2,…]`` sweeps that parameter, weakest
    first), as ``--defence`` takes it: the ``{name, params, sweep}`` of a federated defence."""
    name, _, rest = text.partition(":")
    spec: dict[str, Any] = {"name": name.strip()}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or not match.group(0):
            raise ValueError(
                f"--defence {text!r}: write NAME or NAME:PARAM=VALUE,PARAM=[V1,V2] "
                "(e.g. pruning:p=[0.5,0.9] or dp:clip=1,noise_multiplier=0.1)"
            )
        value = parse_yaml(match.group(2), f"--defence {text!r}")
        part = "sweep" if isinstance(value, list) else "params"
        spec.setdefault(part, {})[match.group(1)] = value
        pos = match.end()
    if "params" in spec and "sweep" not in spec:
        spec["label"] = f"{spec['name']} " + " ".join(f"{k}={v}" for k, v in spec["params"].items())
    return spec


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A training recipe: the training settings (TrainConfig's keys) and ``regime``."""
    data = read_yaml_file(Path(path), "recipe") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a mapping of training settings")
    unknown = sorted(set(data) - set(TrainConfig.model_fields) - {"regime", "head"})
    if unknown:
        valid = sorted([*TrainConfig.model_fields, "regime", "head"])
        raise ValueError(f"{path}: unknown recipe key(s) {unknown}; valid: {valid}")
    return data


def inversion_block(plan: AuditPlan, input_shape: tuple[int, ...]) -> tuple[dict | None, str]:
    """Model inversion of every class (white-box, image data, a prior trained on the
    attacker's population), or why it is left out."""
    access = set(expand_access(plan.access))
    if not {"logits", "input_gradients"} <= access:
        return None, "model inversion: needs logits and input_gradients (--access white-box)"
    if len(input_shape) != 3:
        return None, f"model inversion: needs image data (inputs here have shape {input_shape})"
    if plan.population is None:
        return None, "model inversion: its prior is trained on the attacker's data (--population)"
    attacks = [{"name": "mi_face"}, {"name": "ppa"}]
    return {"attacks": attacks, "robustness": None, "hsic_samples": 0}, ""


def _given_model(plan: AuditPlan) -> dict[str, Any]:
    """The audited model itself (with its weights) as a ``user_model`` component."""
    params: dict[str, Any] = {"spec": plan.model, "given": True}
    params |= {"weights": plan.weights} if plan.weights else {}
    return {"name": "user_model", "params": params}


def reconstruction_block(
    plan: AuditPlan, data: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """Reconstruction of the members from the released weights (the informed adversary's
    closed form, which the run reports as not applicable to anything but a softmax
    regression; the weak adversary when the recipe says the model is a ``head`` trained on
    frozen features), or why it is left out. The objective's λ is the recipe's weight decay."""
    if "weights" not in expand_access(plan.access):
        return None, "reconstruction from weights: needs weights (--access white-box)"
    recipe = plan.recipe or {}
    released = {
        "data": {"name": "user_files", "params": data},
        "model": _given_model(plan),
        "l2": float(recipe.get("weight_decay", 0.0)),
    }
    return {"released_model": released | ({"head": recipe["head"]} if "head" in recipe else {})}, ""


def gradient_inversion_block(
    plan: AuditPlan, input_shape: tuple[int, ...], data: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The server's inversion of client updates of this model on batches of members (the
    model's own cross-entropy), or why it is left out."""
    access = set(expand_access(plan.access))
    if not {"param_gradients", "weights"} <= access:
        return None, "gradient inversion: needs param_gradients and weights (--access white-box)"
    if len(input_shape) != 3:
        return None, f"gradient inversion: needs image data (inputs here have shape {input_shape})"
    if plan.model.endswith(".pt2"):
        return None, "gradient inversion: simulates updates on the model's code (give FILE.py:NAME)"
    return {
        "data": {"name": "user_files", "params": data},
        "model": _given_model(plan),
        "clients": [{"batch_size": 4}],
        "batches": 2,
        "attacks": [{"name": "inverting_gradients", "label": "IG", "params": {"iterations": 300}}],
        "defences": ["none", *(d for d in plan.defences if d != "none")],
        "utility": None,  # the audited model is not re-trained by FedAvg
    }, ""


def audit_config(plan: AuditPlan) -> tuple[dict[str, Any], list[str]]:
    """The experiment config of ``plan`` (a targets section with one given target) and the
    lines saying which attacks were left out and why."""
    attacks, skipped = membership_attacks(plan)
    shape = _input_shape(plan.members, plan.label_column)
    data: dict[str, Any] = {"members": plan.members, "nonmembers": plan.nonmembers}
    data |= {"population": plan.population} if plan.population else {}
    data |= {"label_column": plan.label_column} if plan.label_column else {}
    data |= {"feature_names": plan.feature_names} if plan.feature_names else {}
    inversion, why = inversion_block(plan, shape)
    federated, why_not_federated = gradient_inversion_block(plan, shape, data)
    reconstruction, why_not_rebuilt = reconstruction_block(plan, data)
    skipped += [w for w in (why, why_not_federated, why_not_rebuilt) if w]
    recipe = dict(plan.recipe or {})
    regime = recipe.pop("regime", "natural")
    recipe.pop("head", None)  # the weak adversary's (reconstruction_block)
    section = {
        "data": {"name": "user_files", "params": data},
        "model": {"name": "user_model", "params": {"spec": plan.model}},
        "train": recipe,
        "targets": [
            {"name": "audited model", "regime": regime, "given": {"weights": plan.weights}}
        ],
        "threat_model": {
            "access": expand_access(plan.access),
            "reference": "shadow" if plan.can_train else "none",
        }
        | ({"trainer": plan.trainer} if plan.trainer and plan.can_train else {}),
        "attacks": attacks,
        "evaluation": {"adv_steps": 0},  # no robustness measurement unless asked for
    }
    if inversion is not None:
        section["inversion"] = inversion
    if (regime if isinstance(regime, str) else regime.get("name")) == "dp_sgd":
        section["dp_audit"] = dp_audit_block(plan)
    config: dict[str, Any] = {"name": plan.name, "seed": plan.seed, "targets": section}
    if federated is not None:
        config["gradient_inversion"] = federated
    if reconstruction is not None:
        config["reconstruction"] = reconstruction
    return config, skipped
