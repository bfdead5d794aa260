"""The model-inversion part of a run: public prior, evaluator, attacks and per-target metrics.

Per seed, :func:`inversion_setup` trains (or loads) the attacker's generative prior on public
data and the evaluation classifier on the private members. Per target,
:func:`evaluate_inversion` runs every inversion attack (results cached in the run's
``state/``) and measures what the AT-AT study puts next to attack success: test and robust
accuracy, nHSIC per hidden layer and, for a pixel-masked model, whether masked pixels can
influence the output at all.

Beside the evaluator's Acc@1 every attack records success by distance
(:mod:`privlab.metrics.inversion_distance`): a reconstruction of class c is within τ of a
private image of class c in pixel MSE, τ calibrated per seed on the members and non-members
(their true labels); "both" is the evaluator agreeing and within τ.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from privlab import __version__
from privlab.config.base import AttackConfig, Component
from privlab.data.bundle import DataBundle, Split, class_subset
from privlab.metrics.hsic import layer_hsic
from privlab.metrics.inversion import inversion_metrics
from privlab.metrics.inversion_distance import (
    class_mean_success,
    distance_success,
    distance_threshold,
    heldout_success,
)
from privlab.models.vae import VAE, train_vae
from privlab.registry import ATTACKS, DATASETS
from privlab.report.image_codec import image_hex
from privlab.run.files import cache_lock, stable_hash
from privlab.run.model_cache import TrainedModel, get_or_train
from privlab.run.progress import Progress, step
from privlab.run.store import StateDir
from privlab.run.weights import save_model, try_load_cached
from privlab.studies.targets.config import InversionConfig, PriorConfig, TargetsConfig
from privlab.threat_model import Target


@dataclasses.dataclass
class InversionSetup:
    public: Split
    prior: VAE
    prior_key: str
    evaluator: TrainedModel
    evaluator_test_acc: float
    #: τ of the distance success and its two reference levels (:func:`distance_tau`)
    distance: dict[str, float | None] = dataclasses.field(default_factory=dict)

    @property
    def tau(self) -> float | None:
        return self.distance.get("tau")


def public_data(config: TargetsConfig, bundle: DataBundle, seed: int) -> Split:
    """The attacker's public images: other classes of the dataset, or the bundle's population."""
    assert config.inversion is not None
    classes = config.inversion.prior.public_classes
    if classes is None:
        return bundle.population
    full = DATASETS.build(config.data.name, seed=seed, **config.data.params)
    if max(classes) >= full.num_classes:
        raise ValueError(
            f"inversion.prior.public_classes {classes}: the dataset has classes "
            f"0–{full.num_classes - 1}"
        )
    everything = Split(
        torch.cat([full.members.x, full.nonmembers.x, full.population.x]),
        torch.cat([full.members.y, full.nonmembers.y, full.population.y]),
    )
    return class_subset(everything, classes)


def get_or_train_prior(
    cfg: InversionConfig,
    public: Split,
    bundle: DataBundle,
    *,
    seed: int,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
) -> tuple[VAE, str]:
    prior_cfg = cfg.prior
    recipe = {
        "role": "prior",
        "prior": prior_cfg.model_dump(),
        "seed": seed,
        "public_sha256": public.sha256(),
        "init": "seeded",
        "torch": torch.__version__.split("+")[0],
    }
    key = stable_hash(recipe)
    path = cache_dir / "models" / f"prior-{key}.safetensors"
    vae = VAE(
        bundle.input_shape,
        latent=prior_cfg.latent,
        hidden=prior_cfg.hidden,
        value_range=bundle.value_range,
        seed=seed + 40_000,
    )
    with cache_lock(path, lambda: progress.log("prior: waiting for another process")):
        if try_load_cached(vae, path) is not None:
            progress.log(f"prior (seed {seed}): loaded from cache")
            return vae.eval(), key
        return _train_prior(vae, public, prior_cfg, recipe, path, seed, device, progress), key


def _train_prior(
    vae: VAE,
    public: Split,
    prior_cfg: PriorConfig,
    recipe: dict[str, Any],
    path: Path,
    seed: int,
    device: torch.device,
    progress: Progress,
) -> VAE:
    task = progress.task(f"training the VAE prior on {len(public)} public images", 1)
    start = time.perf_counter()
    history = train_vae(
        vae,
        public.x,
        epochs=prior_cfg.epochs,
        batch_size=prior_cfg.batch_size,
        lr=prior_cfg.lr,
        seed=seed + 40_000,
        device=device,
    )
    task.done()
    vae = vae.cpu()
    save_model(
        vae, path, {"recipe": recipe, "seconds": time.perf_counter() - start, "history": history}
    )
    return vae


def get_or_train_evaluator(
    cfg: InversionConfig,
    bundle: DataBundle,
    *,
    seed: int,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
) -> TrainedModel:
    """The judge: ``cfg.evaluator.model`` trained naturally on the private members."""
    return get_or_train(
        role="evaluator",
        data=bundle.members,
        bundle=bundle,
        model_cfg=cfg.evaluator.model,
        regime_cfg=Component(name="natural"),
        train_cfg=cfg.evaluator.train,
        seed=seed + 20_000,
        device=device,
        cache_dir=cache_dir,
        progress=progress,
        label=f"evaluator (seed {seed})",
    )


def inversion_setup(
    config: TargetsConfig,
    bundle: DataBundle,
    seed: int,
    *,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
) -> InversionSetup:
    cfg = config.inversion
    assert cfg is not None
    public = public_data(config, bundle, seed)
    prior, prior_key = get_or_train_prior(
        cfg, public, bundle, seed=seed, device=device, cache_dir=cache_dir, progress=progress
    )
    evaluator = get_or_train_evaluator(
        cfg, bundle, seed=seed, device=device, cache_dir=cache_dir, progress=progress
    )
    from privlab.metrics.utility import accuracy

    test_acc = accuracy(evaluator.model, bundle.nonmembers.x, bundle.nonmembers.y, device=device)
    distance = distance_tau(bundle, cfg.classes)
    return InversionSetup(public, prior, prior_key, evaluator, test_acc, distance)


def distance_tau(bundle: DataBundle, classes: list[int] | None) -> dict[str, float | None]:
    """``tau``: the distance success's threshold, the mean over the members (of the attacked
    classes, true labels) of the pixel MSE to the nearest non-member of the same class;
    ``class_mean_within_tau``: the fraction of those classes whose mean member image is within
    τ (the no-information level); ``heldout_within_tau``: the fraction of those non-members
    within τ of a member of their class (a real image the model never saw). All None without
    non-members of those classes. Properties of the data, the same for every target."""
    members, held = bundle.members, bundle.nonmembers
    kw: dict[str, Any] = {"value_range": bundle.value_range, "classes": classes}
    try:
        tau = distance_threshold(members.x, members.y, held.x, held.y, **kw)
    except ValueError:
        return {"tau": None, "class_mean_within_tau": None, "heldout_within_tau": None}
    return {
        "tau": tau,
        "class_mean_within_tau": class_mean_success(members.x, members.y, tau, **kw),
        "heldout_within_tau": heldout_success(members.x, members.y, held.x, held.y, tau, **kw),
    }


def run_inversion_attack(
    acfg: AttackConfig,
    target: Target,
    private: Split,
    setup: InversionSetup,
    bundle: DataBundle,
    cfg: InversionConfig,
    seed: int,
    device: torch.device,
    grid_seed: int,
) -> dict[str, Any]:
    attack = ATTACKS.build(acfg.name, **acfg.params)
    recon = attack.invert(target, cfg.classes, prior=setup.prior, seed=seed + 60_000)
    metrics = inversion_metrics(
        setup.evaluator.model,
        recon.images,
        recon.labels,
        private,
        heldout=bundle.nonmembers,
        num_classes=bundle.num_classes,
        device=device,
    )
    distance = distance_success(
        recon.images,
        recon.labels,
        private.x,
        private.y,
        tau=setup.tau,
        evaluator_hit=metrics["image_hit1"],
        value_range=bundle.value_range,
    )
    for c, rates in distance.pop("per_class").items():
        metrics["per_class"][c] |= rates
    metrics |= distance
    shown = cfg.grid_classes if seed == grid_seed else 0  # grids of the first seed only
    grid = _grid(recon.images, recon.labels.tolist(), metrics, private, bundle, shown)
    return {
        "attack": acfg.name,
        "label": acfg.display,
        "params": attack.params(),
        "seconds": recon.seconds,
        "target_confidence": float(recon.confidence.mean()),
        "images": len(recon.labels),
        **{k: v for k, v in metrics.items() if not k.startswith("image_")},
        "grid": grid,
    }


def _grid(
    images: torch.Tensor,
    labels: list[int],
    metrics: dict[str, Any],
    private: Split,
    bundle: DataBundle,
    shown: int,
) -> list[dict[str, Any]]:
    """The report's image grid: the best image of the first ``shown`` classes (selection
    order), its nearest private image in the evaluator's features and its success flags."""
    nearest = metrics.pop("nearest_private")
    grid = []
    for c in sorted(set(labels))[:shown]:
        i = labels.index(c)
        grid.append(
            {
                "class": c,
                "class_name": bundle.class_names[c] if bundle.class_names else str(c),
                "image": image_hex(images[i], bundle.value_range),
                "nearest": image_hex(private.x[nearest[i]], bundle.value_range),
                "knn_dist": metrics["image_knn_dist"][i],
                "hit1": metrics["image_hit1"][i],
                "nearest_mse": metrics["image_nearest_mse"][i],
                "within_tau": metrics["image_within_tau"][i],
                "both": metrics["image_both"][i],
            }
        )
    return grid


def masked_invariance(
    model: nn.Module, x: torch.Tensor, trials: int = 8, seed: int = 0
) -> dict[str, Any] | None:
    """For a pixel-masked model: do inputs that differ only on masked pixels give identical
    outputs? Returns the largest logit change over random rewrites of the masked pixels."""
    from privlab.training.regimes.drop_layer import pixel_mask

    kept = pixel_mask(model)
    if kept is None:
        return None
    kept = kept.cpu().bool()
    gen = torch.Generator().manual_seed(seed)
    dropped = ~kept.expand_as(x[0])
    largest = 0.0
    with torch.no_grad():
        base = model.cpu()(x)
        for _ in range(trials):
            noise = torch.rand(x.shape, generator=gen)
            changed = torch.where(dropped, noise, x)
            largest = max(largest, float((model(changed) - base).abs().max()))
    return {
        "pixels_kept": int(kept.sum()),
        "pixels_total": int(kept.numel()),
        "pixels_kept_fraction": float(kept.float().mean()),
        "max_logit_change": largest,
        "identical_outputs": largest == 0.0,
    }


def target_measurements(
    model: nn.Module, bundle: DataBundle, cfg: InversionConfig, seed: int, device: torch.device
) -> dict[str, Any]:
    """Robust accuracy, nHSIC per hidden layer and the masked-pixel check of one target."""
    out: dict[str, Any] = {}
    test = bundle.nonmembers
    if cfg.robustness is not None:
        from privlab.metrics.robustness import robust_accuracy

        n = min(cfg.robustness.samples, len(test))
        out["robustness"] = robust_accuracy(
            model,
            test.x[:n],
            test.y[:n],
            eps=cfg.robustness.eps,
            attack=cfg.robustness.attack,
            steps=cfg.robustness.steps,
            clip=bundle.value_range,
            device=device,
            seed=seed,
        )
    if cfg.hsic_samples:
        n = min(cfg.hsic_samples, len(test))
        n -= n % cfg.hsic_batch
        if n >= cfg.hsic_batch:
            out["hsic"] = layer_hsic(
                model.cpu(),
                test.x[:n],
                test.y[:n],
                num_classes=bundle.num_classes,
                batch_size=cfg.hsic_batch,
            )
    masked = masked_invariance(model.cpu(), test.x[:256], seed=seed)
    if masked is not None:
        out["masked_pixels"] = masked
    return out


def evaluate_inversion(
    trained: TrainedModel,
    target: Target,
    setup: InversionSetup,
    bundle: DataBundle,
    config: TargetsConfig,
    seed: int,
    *,
    state: StateDir,
    grid_seed: int,
    device: torch.device,
    progress: Progress,
) -> dict[str, Any]:
    """Every inversion attack on one target plus its measurements. Each attack result and the
    measurements are cached in state/ under keys holding everything they depend on (the
    attack's resolved hyperparameters included), so an interrupted run resumes per attack."""
    cfg = config.inversion
    assert cfg is not None
    start = time.perf_counter()
    # a class's private images are those the model was trained to call that class (permuted
    # labels: the members given that label)
    private = Split(bundle.members.x, trained.regime.train_labels(bundle.members.y))
    common = [__version__, trained.key, setup.prior_key, setup.evaluator.key, cfg.classes]
    attacks = []
    for acfg in cfg.attacks:
        resolved = ATTACKS.build(acfg.name, **acfg.params).params()
        shown = cfg.grid_classes if seed == grid_seed else 0
        key = [*common, acfg.name, acfg.display, resolved, shown, {"distance_tau": setup.tau}]

        def run(acfg: AttackConfig = acfg) -> dict[str, Any]:
            with step(progress, f"{acfg.display} inversion of {target.info.name}"):
                return run_inversion_attack(
                    acfg, target, private, setup, bundle, cfg, seed, device, grid_seed
                )

        attacks.append(state.get_or_run(f"inversion-{acfg.display}", {"unit": key}, run))
    from privlab.metrics.utility import accuracy

    measure_key = {
        "privlab": __version__,
        "model": trained.key,
        "robustness": cfg.robustness and cfg.robustness.model_dump(),
        "hsic": [cfg.hsic_samples, cfg.hsic_batch],
    }
    measurements = state.get_or_run(
        "measurements",
        measure_key,
        lambda: {
            # accuracy on the labels it was trained on (permuted labels: memorisation)
            "train_label_acc": accuracy(trained.model, private.x, private.y, device=device),
            **target_measurements(trained.model, bundle, cfg, seed, device),
        },
    )
    return {
        "attacks": attacks,
        **measurements,
        "evaluator_test_acc": setup.evaluator_test_acc,
        **setup.distance,
        "seconds": time.perf_counter() - start,
    }
