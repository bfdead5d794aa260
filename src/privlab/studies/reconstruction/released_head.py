"""The weak adversary (Maciazek & Allison) on a released model that is a head trained on
frozen features: the features of the rest of the model are computed on the attacker's
population, shadow heads are trained on sets of the members' size and class balance the way
the head was, and the reconstructor fitted on them is applied to the released head. Success:
a class's reconstruction lies within τ (the nearest-neighbour MSE between the priors) of a
member of that class; the validation shadow heads give the attack's TPR* and FPR* on heads
trained like it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from privlab.attacks.reconstruction.weak_adversary import Reconstructor, WeakAdversary
from privlab.data.bundle import DataBundle
from privlab.metrics.membership import clopper_pearson
from privlab.metrics.reconstruction import pairwise_mse, to_symmetric
from privlab.report.image_codec import image_hex
from privlab.run.progress import Progress
from privlab.run.weights import state_sha256
from privlab.studies.reconstruction.config import (
    ReleasedHeadConfig,
    WeakAdversaryConfig,
    WeakVariant,
)
from privlab.studies.reconstruction.weak import Priors, run_weak_variant, variant_settings
from privlab.threat_model import Access, Target, TargetInfo
from privlab.training.heads import HeadSpec

#: relative tolerance of the check that head(body(x)) is the model's output
SPLIT_RTOL = 1e-4


class NotApplicable(ValueError):
    """The weak adversary does not apply to this model or data (the message says why)."""


def split_head(model: nn.Module, name: str) -> tuple[nn.Module, nn.Sequential, HeadSpec]:
    """(the model with its head replaced by the identity, the head laid out as
    :func:`privlab.training.heads.build_head` lays it out, its shape as a HeadSpec)."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        names = [n for n in modules if n][:12]
        raise NotApplicable(f"the model has no module {name!r} (it has {names})")
    head = modules[name]
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    kinds = [type(m) for m in layers]
    if kinds not in ([nn.Linear], [nn.Linear, nn.ReLU, nn.Linear]):
        raise NotApplicable(f"head {name!r} is not a Linear layer or Linear → ReLU → Linear")
    if any(m.bias is None for m in layers if isinstance(m, nn.Linear)):
        raise NotApplicable(f"head {name!r} has a Linear layer without bias")
    hidden = layers[0].out_features if len(layers) == 3 else None
    spec = HeadSpec(outputs=layers[-1].out_features, hidden=hidden)
    body = copy.deepcopy(model)
    parent, _, attr = name.rpartition(".")
    setattr(body.get_submodule(parent) if parent else body, attr, nn.Identity())
    return body.eval(), nn.Sequential(*copy.deepcopy(layers)).eval(), spec


@torch.no_grad()
def features_of(
    body: nn.Module, head: nn.Module, model: nn.Module, x: torch.Tensor
) -> torch.Tensor:
    """The frozen features of ``x``; checks that the head on them gives the model's output."""
    feats = torch.cat([body(x[i : i + 512]) for i in range(0, len(x), 512)])
    if feats.dim() != 2:
        raise NotApplicable(f"the head's input has shape {tuple(feats.shape[1:])}, not (features,)")
    sample = x[:256]
    expected = model(sample)
    gap = float((head(feats[:256]) - expected).abs().max())
    if gap > SPLIT_RTOL * (1.0 + float(expected.abs().max())):
        raise NotApplicable(f"the model does more after its head (outputs differ by {gap:.3g})")
    return feats


def balanced_size(bundle: DataBundle, classes: int) -> int:
    """N, the members' count, when every class has N / classes members (the paper's sets)."""
    counts = torch.bincount(bundle.members.y, minlength=classes)
    if len(counts) != classes or int(counts.min()) != int(counts.max()) or counts[0] == 0:
        raise NotApplicable(
            f"the shadow sets copy a class-balanced training set; the members' class counts are "
            f"{counts.tolist()}"
        )
    return len(bundle.members)


def judge_released(
    head: nn.Sequential,
    attack: WeakAdversary,
    bundle: DataBundle,
    tau: float,
    examples: int,
) -> Any:
    """What the fitted reconstructor makes of the released head: per class, its reconstruction
    within τ of a member of the class or not."""
    info = TargetInfo("released head", bundle.num_classes, bundle.input_shape)
    members = to_symmetric(bundle.members.x, bundle.value_range)

    def judge(recon: Reconstructor) -> dict[str, Any]:
        images = attack.reconstruct(recon, Target(head, info, Access.WEIGHTS))
        rows = []
        for image, c in zip(images, recon.targets, strict=True):
            own = members[bundle.members.y == c]
            mse = pairwise_mse(image[None], own)[0]
            best = int(mse.argmin())
            rows.append((c, float(mse[best]), image, own[best]))
        hits = sum(mse <= tau for _, mse, _, _ in rows)
        return {
            "classes": len(rows),
            "reconstructed": hits,
            "rate": hits / len(rows),
            "rate_ci": list(clopper_pearson(hits, len(rows))),
            "mse": [mse for _, mse, _, _ in rows],
            "examples": [
                {
                    "class": c,
                    "mse": mse,
                    "success": mse <= tau,
                    "image": image_hex(image, (-1.0, 1.0)),
                    "nearest": image_hex(nearest, (-1.0, 1.0)),
                }
                for c, mse, image, nearest in rows[:examples]
            ],
        }

    return judge


def weak_on_released_head(
    cfg: ReleasedHeadConfig,
    model: nn.Module,
    bundle: DataBundle,
    *,
    seed: int,
    examples: int,
    cache: Path,
    progress: Progress,
) -> dict[str, Any]:
    """The weak adversary on the released head, or ``{"applicable": False, "reason"}``."""
    try:
        if len(bundle.input_shape) != 3:
            raise NotApplicable(
                f"reconstructs images (inputs here have shape {bundle.input_shape})"
            )
        if not len(bundle.population):
            raise NotApplicable("its shadow heads are trained on the attacker's data (population)")
        body, head, shape = split_head(model, cfg.module)
        spec = cfg.train.model_copy(update={"outputs": shape.outputs, "hidden": shape.hidden})
        n = balanced_size(bundle, spec.outputs)
        pop = bundle.population
        priors = Priors(
            features_of(body, head, model, pop.x),
            pop.y,
            to_symmetric(pop.x, bundle.value_range),
            prior_split=cfg.prior_split,
            seed=seed,
            extractor_sha256=state_sha256(body),
        )
        features_of(body, head, model, bundle.members.x)  # the split holds on the members too
        for part in ("train", "val"):
            counts = torch.bincount(priors.part(part)[1], minlength=spec.outputs)
            if int(counts.min()) < n // spec.outputs:
                raise NotApplicable(
                    f"the {part} prior has {counts.tolist()} population examples per class; "
                    f"sets of {n} need {n // spec.outputs} of each"
                )
    except NotApplicable as why:
        return {"applicable": False, "reason": str(why)}
    weak = WeakAdversaryConfig(  # the transfer settings the study's variants read; the
        head=spec,  # priors come from the population above, not from ``dataset``
        n=n,
        shadows=cfg.shadows,
        val_shadows=cfg.val_shadows,
        shard_size=cfg.shard_size,
        reconstructor=cfg.reconstructor,
        examples=0,
    )
    variant = WeakVariant(name="released head")
    s = variant_settings(weak, variant)
    judge = judge_released(head, s["reconstructor"], bundle, priors.tau, examples)
    out = run_weak_variant(
        weak, variant, priors, s, seed=seed, cache=cache, progress=progress, released=judge
    )
    return {"applicable": True, "module": cfg.module, "pool": len(pop)} | out
