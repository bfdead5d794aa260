"""TL-DMI, transfer learning against model inversion (Ho et al., "Model Inversion Robustness:
Can Transfer Learning Help?", CVPR 2024).

The model is first pre-trained with natural cross-entropy on public data (whose classes may
differ from the private ones: its labels are remapped to 0..K−1 under a K-way logit layer),
then fine-tuned on the private data with the first layers frozen at their pre-trained values:

    L = CE(f_θ(x), y),  θ = (θ_frozen = θ_public, θ_trainable),

so the private data can only shape the later layers, which the paper finds reduces the
private information a model-inversion attack recovers. ``freeze_layers`` counts parameterised
layers (Linear, Conv2d, BatchNorm) in order; 1 freezes the MLP's first layer (SPEC: "pretrain
the MLP on the public split, then freeze its first layer"); 0 freezes the whole feature
extractor. The logit layer is never frozen (it starts fresh for the private classes).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.models.surgery import last_linear, set_module
from privlab.registry import REGIMES
from privlab.training.regime import Regime


def parameterised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules holding parameters of their own, in definition order."""
    return [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(False))]


@REGIMES.register("tl_dmi")
@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferLearningDefence(Regime):
    """TL-DMI: pre-train on public data, freeze the first layers, fine-tune on private data."""

    name = "tl_dmi"
    uses_public_data = True
    pretrain_epochs: int = 10
    pretrain_lr: float = 1e-3
    freeze_layers: int = 1
    pretrain_seed: int | None = None  # None: the training run's seed (torch.initial_seed())
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pretrain_epochs < 0 or self.freeze_layers < 0:
            raise ValueError("pretrain_epochs and freeze_layers must be non-negative")

    def _pretrain(self, model: nn.Module, batch_size: int, device: torch.device) -> nn.Module:
        if self._public is None or len(self._public) == 0:
            raise ValueError(
                "tl_dmi pre-trains on public data: pass a public split as the regime's _public "
                "(the experiment runner uses the bundle's population)"
            )
        classes, y = torch.unique(self._public.y, return_inverse=True)
        x, y = self._public.x.to(device), y.to(device)
        name, linear = last_linear(model)
        net = copy.deepcopy(model).train()
        set_module(net, name, nn.Linear(linear.in_features, len(classes)).to(device))
        seed = self.pretrain_seed if self.pretrain_seed is not None else torch.initial_seed()
        loader = DataLoader(
            TensorDataset(x, y),
            batch_size=min(batch_size, len(y)),
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        opt = torch.optim.Adam(net.parameters(), lr=self.pretrain_lr)
        for _ in range(self.pretrain_epochs):
            for xb, yb in loader:
                loss = F.cross_entropy(net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            self._state["pretrain_accuracy"] = float((net.eval()(x).argmax(1) == y).float().mean())
        return net

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        device = next(model.parameters()).device
        net = self._pretrain(model, loader.batch_size or 64, device)
        head, _ = last_linear(model)
        state = {k: v for k, v in net.state_dict().items() if not k.startswith(head + ".")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or not all(k.startswith(head + ".") for k in missing):
            raise RuntimeError(f"pre-trained weights do not fit: {missing=}, {unexpected=}")
        self._state["pretrained"] = {k: v.detach().clone() for k, v in state.items()}
        layers = [(n, m) for n, m in parameterised_layers(model) if n != head]
        frozen = layers if self.freeze_layers == 0 else layers[: self.freeze_layers]
        for _, module in frozen:
            module.requires_grad_(False)
        self._state["frozen"] = [n for n, _ in frozen]
        trainable = [p for p in model.parameters() if p.requires_grad]
        return model, type(optimizer)(trainable, **optimizer.defaults), loader

    def finalize(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(True)  # a plain module again
        return model

    def summary(self) -> dict[str, Any]:
        keys = ("pretrain_accuracy",)
        return {
            **{k: self._state[k] for k in keys if k in self._state},
            "frozen_layers": len(self._state.get("frozen", [])),
        }
