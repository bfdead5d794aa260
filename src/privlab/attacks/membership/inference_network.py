"""Per-class inference networks on prediction vectors (Shokri et al. 2017; Song et al. §5.2.5).

For every class label a binary classifier — a fully connected net with 200, 20 and 2 units —
learns member vs non-member from the attacker's labelled reference data (revealed members of
the target, or a shadow model's own members), on one of three views of each example:

* ``benign``: F(x);
* ``untargeted``: F(x_adv) for untargeted PGD ("model-infer (untargeted)");
* ``targeted``: the k−1 vectors F(x_adv^{y'}) of targeted PGD towards every wrong label y',
  concatenated ("model-infer (targeted)", the paper's strongest attack).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.features import (
    attack_budget,
    benign_probs,
    targeted_probs,
    untargeted_probs,
)
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Knowledge, Target


def _classifier(in_features: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_features, 200), nn.ReLU(), nn.Linear(200, 20), nn.ReLU(), nn.Linear(20, 2)
    )


@ATTACKS.register("inference_network")
@dataclasses.dataclass(kw_only=True)
class InferenceNetwork(MembershipAttack):
    """Per-class 200-20-2 networks on benign / untargeted / targeted prediction vectors."""

    name = "inference_network"
    requires = Access.PROBS | Access.INPUT_GRADIENTS
    needs_reference = True
    decision_threshold = 0.5
    view: Literal["benign", "untargeted", "targeted"] = "targeted"
    #: feed log F(x) instead of F(x): confident probabilities saturate at 1.0 in float32,
    #: their logarithms do not (the paper feeds F(x))
    log_probs: bool = False
    eps: float | None = None
    steps: int = 10
    step_size: float | None = None
    epochs: int = 200
    lr: float = 1e-3
    seed: int = 0
    _nets: dict[int, nn.Module] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.view not in ("benign", "untargeted", "targeted"):
            raise ValueError(f"unknown view {self.view!r}; use benign, untargeted or targeted")

    def features(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = self._probs(target, x, y)
        return (probs.clamp_min(1e-300).log() if self.log_probs else probs).float()

    def _probs(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.view == "benign":
            target.require(Access.PROBS, f"attack {self.name!r}")
            return benign_probs(target, x).cpu()
        target.require(self.requires, f"attack {self.name!r} ({self.view})")
        eps = attack_budget(target, self.eps)
        fn = untargeted_probs if self.view == "untargeted" else targeted_probs
        chunks = [
            fn(
                target,
                x[i : i + self.batch_size],
                y[i : i + self.batch_size],
                eps=eps,
                steps=self.steps,
                step_size=self.step_size,
            ).cpu()
            for i in range(0, len(y), self.batch_size)
        ]
        return torch.cat(chunks)

    def fit(self, knowledge: Knowledge) -> InferenceNetwork:
        super().fit(knowledge)
        feats, labels, classes = [], [], []
        for ref in knowledge.reference:
            for split, is_member in ((ref.members, 1), (ref.nonmembers, 0)):
                feats.append(self.features(ref.target, split.x, split.y))
                labels.append(torch.full((len(split),), is_member))
                classes.append(split.y)
        x_all, m_all, c_all = torch.cat(feats), torch.cat(labels), torch.cat(classes)
        gen = torch.Generator().manual_seed(self.seed)
        self._nets = {}
        for c in c_all.unique().tolist():
            sel = c_all == c
            if m_all[sel].unique().numel() < 2:
                continue  # cannot learn membership for this class; it scores 0.5
            self._nets[int(c)] = self._train_one(x_all[sel], m_all[sel], gen)
        return self

    def _train_one(self, x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> nn.Module:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        net = _classifier(x.shape[1])
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        # Balance members and non-members so the 0.5 decision threshold is meaningful.
        weight = torch.tensor([1.0 / max(int((m == 0).sum()), 1), 1.0 / max(int(m.sum()), 1)])
        for _ in range(self.epochs):
            opt.zero_grad()
            F.cross_entropy(net(x), m, weight=weight / weight.sum()).backward()
            opt.step()
        return net.eval()

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if not self._nets:
            raise RuntimeError(f"attack {self.name!r} must be fit before scoring")
        feats = self.features(target, x, y)
        out = torch.full((len(y),), 0.5)
        with torch.no_grad():
            for c, net in self._nets.items():
                sel = y.cpu() == c
                if sel.any():
                    out[sel] = net(feats[sel]).softmax(dim=1)[:, 1]
        return out.numpy()
