"""Data-augmentation robustness, label-only (Choquette-Choo et al. 2021, §4.1): a model labels
augmented copies of its training points correctly more often than those of unseen points.
Images are translated (and optionally mirrored); other inputs get Gaussian noise at several
scales (their "noise robustness" variant)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from privlab.attacks.base import MembershipAttack
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target

AUGMENTS = ("auto", "translate", "noise", "both")
PADDING = ("replicate", "reflect", "constant")


def translations(shift: int) -> list[tuple[int, int]]:
    """Every (dy, dx) with |dy|, |dx| ≤ shift, the identity first."""
    offsets = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    return sorted(offsets, key=lambda o: (o != (0, 0), abs(o[0]) + abs(o[1]), o))


def translate(x: torch.Tensor, dy: int, dx: int, padding: str, fill: float) -> torch.Tensor:
    """``x`` (N×C×H×W) moved ``dy`` pixels down and ``dx`` right; the pixels shifted in repeat
    the border (replicate), mirror it (reflect) or are ``fill`` (constant)."""
    if dy == dx == 0:
        return x
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    kwargs = {"value": fill} if padding == "constant" else {}
    padded = F.pad(x, (p, p, p, p), mode=padding, **kwargs)
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


@ATTACKS.register("augmentation_labels")
@dataclasses.dataclass(kw_only=True)
class AugmentationLabels(MembershipAttack):
    """Label-only: score = the fraction of augmented copies of x (x itself included) that the
    target labels y (Choquette-Choo et al. 2021).

    ``augment``: ``translate`` queries every translation by up to ±``shift`` pixels in each
    direction ((2·shift + 1)² copies; ``flip`` adds each one's mirror image: for natural
    images, not digits or text), the shifted-in pixels filled by ``padding`` (replicate,
    reflect, or constant at the value range's low end); ``noise`` queries ``noise_draws`` copies
    with Gaussian noise of each standard deviation in ``noise_scales`` (input units), clipped to
    the value range; ``both`` queries the two sets. ``auto`` (default): ``both`` for C×H×W
    images, ``noise`` for other inputs. Translations are the signal of a model trained with
    them; one trained without them labels shifted copies of members and non-members alike
    wrongly, and the noise copies carry its signal (measured on mnist5k and synthetic
    prototypes; the attacker need not know which the model was). ``seed`` fixes the noise (a
    generator of its own, on the target's device).
    """

    name = "augmentation_labels"
    requires = Access.LABELS
    augment: str = "auto"
    shift: int = 1
    flip: bool = False
    padding: str = "replicate"
    noise_scales: Sequence[float] = (0.01, 0.03, 0.1, 0.3)
    noise_draws: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.padding not in PADDING:
            raise ValueError(f"padding must be one of {PADDING}, got {self.padding!r}")
        if self.shift < 0 or self.noise_draws < 1:
            raise ValueError(
                f"shift must be ≥ 0 and noise_draws ≥ 1, got {self.shift}, {self.noise_draws}"
            )
        if not self.noise_scales or any(not s > 0 for s in self.noise_scales):
            raise ValueError(f"noise_scales must be positive, got {list(self.noise_scales)}")

    def mode(self, input_shape: tuple[int, ...]) -> str:
        """``translate``, ``noise`` or ``both``: what ``auto`` means for inputs of this shape."""
        if self.augment != "auto":
            return self.augment
        return "both" if len(input_shape) == 3 else "noise"

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        x, y = x.to(target.device), y.to(target.device)
        correct = torch.zeros(len(y), dtype=torch.float64, device=target.device)
        views = 0
        for view in self._views(target, x):
            correct += (target.predict(view) == y).double()
            views += 1
        return (correct / views).cpu().numpy()

    def _views(self, target: Target, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """The augmented copies of ``x``, x itself first, one batch at a time."""
        mode = self.mode(tuple(x.shape[1:]))
        if mode in ("translate", "both") and x.dim() != 4:
            raise ValueError(f"translations need C×H×W inputs, got shape {tuple(x.shape[1:])}")
        lo, hi = target.info.value_range
        yield x
        if mode in ("translate", "both"):
            for k, (dy, dx) in enumerate(translations(self.shift)):
                moved = translate(x, dy, dx, self.padding, lo)
                yield from ([moved] if k else []) + ([moved.flip(-1)] if self.flip else [])
        if mode in ("noise", "both"):
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
            for scale in self.noise_scales:
                for _ in range(self.noise_draws):
                    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
                    yield (x + float(scale) * noise).clamp(lo, hi)
