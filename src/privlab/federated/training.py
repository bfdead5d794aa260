"""FedAvg under a defence: the utility side of Liu et al.'s privacy-utility comparison (Fig. 3).

The training split is shuffled (seeded) and cut into ``clients`` shards of near-equal size.
Every round, m = max(1, round(``participation``·``clients``)) clients are drawn without
replacement; each draws a batch of B = min(``batch_size``, its shard size) examples without
replacement and sends :func:`~privlab.federated.defences.defended_update` of it at the current
global weights (its own ``local_steps`` of SGD at ``lr`` on mini-batches of ``local_batch``).
The server averages the m observed updates (each a pseudo-gradient (θ₀ − θ_end)/η) and steps

    θ ← θ − η_s·mean_k G̃_k,        η_s = ``server_lr`` (default ``lr``: plain FedAvg, the
                                     average of the clients' end weights when undefended).

Utility: test accuracy after every round, and the final training loss (the paper's utility
measure) and accuracy. Utility loss of a defence = undefended minus defended accuracy (or
defended minus undefended loss) at the same seed and settings.

DP accounting (example-level, for the "dp" defence): an example of client k takes part in a
round when its client is drawn and it falls in that client's batch, with probability
q_k = (m/clients)·B/n_k; the largest q (smallest shard) is the worst case, and clients hold
disjoint data, so ε is that client's. Within a round an included example is used by
u = ⌈local_steps·b/B⌉ noisy local steps (b = ``local_batch`` or B; the mini-batches cycle over
the round's batch), i.e. one Gaussian mechanism of noise multiplier σ/√u (see
:meth:`~privlab.federated.defences.dp_sgd.DPSGD.epsilon`). ε = RDP accountant over ``rounds``
steps at rate q with multiplier σ/√u, δ = N^−1.1 (N training examples) unless given. The
accountant assumes Poisson sampling; the fixed-size sampling here is the usual approximation
(as in Opacus without Poisson sampling).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from privlab.data.bundle import Split
from privlab.federated.defences.base import Defence, defended_update
from privlab.federated.defences.dp_sgd import DPSGD
from privlab.federated.defences.none import NoDefence


def shard_indices(n: int, clients: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle of 0..n−1 cut into ``clients`` near-equal shards (IID split)."""
    if not 1 <= clients <= n:
        raise ValueError(f"clients must be in 1..{n} (one example each at least), got {clients}")
    return list(torch.tensor_split(torch.randperm(n, generator=generator), clients))


def evaluate(model: nn.Module, split: Split, batch: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    loss, hits = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(split), batch):
            x, y = split.x[start : start + batch], split.y[start : start + batch]
            logits = model(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            hits += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return loss / len(split), hits / len(split)


def dp_accounting(
    defence: DPSGD,
    *,
    shard_sizes: list[int],
    clients_per_round: int,
    rounds: int,
    batch_size: int,
    local_steps: int,
    local_batch: int | None,
    delta: float,
) -> dict[str, float]:
    """ε of a FedAvg run with DP-SGD clients (the rule in the module docstring)."""
    clients = len(shard_sizes)
    smallest = min(shard_sizes)
    batch = min(batch_size, smallest)
    mini = batch if local_batch is None else min(local_batch, batch)
    uses = math.ceil(local_steps * mini / batch)
    rate = min(1.0, clients_per_round / clients * batch / smallest)
    return {
        "epsilon": defence.epsilon(rounds, rate, delta, uses_per_step=uses),
        "delta": delta,
        "sample_rate": rate,
        "uses_per_round": float(uses),
        "effective_noise_multiplier": defence.noise_multiplier / math.sqrt(uses),
    }


def federated_train(
    model_fn: Callable[[], nn.Module],
    train_split: Split,
    test_split: Split,
    *,
    clients: int = 10,
    rounds: int = 100,
    batch_size: int = 16,
    local_steps: int = 1,
    lr: float = 0.1,
    defence: Defence | None = None,
    seed: int = 0,
    participation: float = 1.0,
    server_lr: float | None = None,
    local_batch: int | None = None,
    delta: float | None = None,
) -> dict[str, Any]:
    """FedAvg simulation under ``defence`` (None: undefended); see the module docstring.

    ``model_fn`` builds the initial model; it is called under ``torch.manual_seed(seed)`` in a
    forked RNG state (the caller's global RNG is left as it was). Returns a dict with
    ``accuracy`` (test accuracy after each round), ``final_accuracy``, ``final_test_loss``,
    ``final_train_loss``, ``final_train_accuracy``, ``defence`` and ``defence_params``,
    ``rounds``, ``clients_per_round``, ``seconds``, the DP accounting (``epsilon``, ``delta``,
    ``sample_rate``, ... for the "dp" defence, ``epsilon`` None otherwise) and ``model``, the
    trained module (drop it before serialising).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if not 0 < participation <= 1:
        raise ValueError(f"participation must be in (0, 1], got {participation}")
    if server_lr is not None and not server_lr > 0:
        raise ValueError(f"server_lr must be positive, got {server_lr}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    chosen = defence if defence is not None else NoDefence()
    at_client = chosen.training_defence()
    step_size = lr if server_lr is None else server_lr
    start = time.perf_counter()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_fn()
    gen = torch.Generator().manual_seed(seed)
    shards = shard_indices(len(train_split), clients, gen)
    per_round = max(1, round(participation * clients))

    accuracy: list[float] = []
    for _ in range(rounds):
        model.train()
        drawn = torch.randperm(clients, generator=gen)[:per_round].tolist()
        total: dict[str, torch.Tensor] | None = None
        for k in drawn:
            shard = shards[k]
            take = min(batch_size, len(shard))
            rows = shard[torch.randperm(len(shard), generator=gen)[:take]]
            obs = defended_update(
                model,
                train_split.x[rows],
                train_split.y[rows],
                at_client,
                local_steps=local_steps,
                lr=lr,
                local_batch=None if local_batch is None else min(local_batch, take),
                generator=gen,
            )
            if total is None:
                total = {n: g.detach().clone() for n, g in obs.gradients.items()}
            else:
                for n, g in obs.gradients.items():
                    total[n] += g
        assert total is not None
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.sub_(step_size * total[n] / len(drawn))
        accuracy.append(evaluate(model, test_split)[1])

    test_loss, test_acc = evaluate(model, test_split)
    train_loss, train_acc = evaluate(model, train_split)
    result: dict[str, Any] = {
        "defence": getattr(chosen, "name", type(chosen).__name__),
        "defence_params": chosen.params(),
        "accuracy": accuracy,
        "final_accuracy": test_acc,
        "final_test_loss": test_loss,
        "final_train_loss": train_loss,
        "final_train_accuracy": train_acc,
        "rounds": rounds,
        "clients": clients,
        "clients_per_round": per_round,
        "batch_size": batch_size,
        "local_steps": local_steps,
        "lr": lr,
        "server_lr": step_size,
        "seed": seed,
        "epsilon": None,
    }
    if isinstance(chosen, DPSGD):
        result |= dp_accounting(
            chosen,
            shard_sizes=[len(s) for s in shards],
            clients_per_round=per_round,
            rounds=rounds,
            batch_size=batch_size,
            local_steps=local_steps,
            local_batch=local_batch,
            delta=float(len(train_split)) ** -1.1 if delta is None else delta,
        )
    result["seconds"] = time.perf_counter() - start
    result["model"] = copy.deepcopy(model)
    return result
