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
measure) and accuracy. The per-round curves (test accuracy, and the training loss the
convergence rule watches) are measured on at most ``monitor_size`` examples of each split, a
fixed seeded sample, so a round costs the same on 2,000 or 60,000 examples; the final losses
and accuracies are over the whole splits. Utility loss of a defence = undefended minus
defended accuracy (or defended minus undefended loss) at the same seed and settings.

``rounds`` is a fixed number of rounds, or a :class:`~privlab.federated.convergence.Convergence`
rule: then the training loss is evaluated after every round and training stops once it has
stopped improving (or at the rule's cap); ``rounds`` in the result is the number run, and
``convergence`` records the rule, whether it fired and the training-loss curve.

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
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from privlab.data.bundle import Split
from privlab.federated.convergence import Convergence
from privlab.federated.defences.base import Defence, defended_update
from privlab.federated.defences.dp_sgd import DPSGD
from privlab.federated.defences.none import NoDefence
from privlab.training.dp_canaries import audit_dp_sgd


def shard_indices(n: int, clients: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle of 0..n−1 cut into ``clients`` near-equal shards (IID split)."""
    if not 1 <= clients <= n:
        raise ValueError(f"clients must be in 1..{n} (one example each at least), got {clients}")
    return list(torch.tensor_split(torch.randperm(n, generator=generator), clients))


#: examples of each split the per-round curves are measured on (mnist5k's splits fit whole)
MONITOR_SIZE = 2000


def monitor_sample(split: Split, size: int, seed: int) -> Split:
    """``split`` itself when it has at most ``size`` examples, else a fixed sample of ``size``
    drawn with its own seeded generator (the clients' random streams are left as they are)."""
    if size < 1:
        raise ValueError(f"monitor_size must be ≥ 1, got {size}")
    if len(split) <= size:
        return split
    gen = torch.Generator().manual_seed(seed)
    return split.subset(torch.randperm(len(split), generator=gen)[:size].sort().values)


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
) -> dict[str, Any]:
    """ε of a FedAvg run with DP-SGD clients (the rule in the module docstring), and the
    white-box audit of the same claim."""
    clients = len(shard_sizes)
    smallest = min(shard_sizes)
    batch = min(batch_size, smallest)
    mini = batch if local_batch is None else min(local_batch, batch)
    uses = math.ceil(local_steps * mini / batch)
    rate = min(1.0, clients_per_round / clients * batch / smallest)
    eps = defence.epsilon(rounds, rate, delta, uses_per_step=uses)
    # the client's DP step audited white-box as this accounting sees it (rounds sampled at
    # the rate, each with its local steps): a lower bound above ε means the rule is broken
    audit = (
        _audit(defence.noise_multiplier, defence.clip, rate, rounds, delta, eps, uses)
        if defence.noise_multiplier > 0
        else None
    )
    return {
        "epsilon": eps,
        "delta": delta,
        "sample_rate": rate,
        "uses_per_round": float(uses),
        "effective_noise_multiplier": defence.noise_multiplier / math.sqrt(uses),
        "dp_audit": audit,
    }


@functools.lru_cache(maxsize=32)
def _audit_memo(
    sigma: float, clip: float, rate: float, steps: int, delta: float, eps: float, uses: int
) -> dict[str, Any]:
    claim = {"noise_multiplier": sigma, "max_grad_norm": clip, "sample_rate": rate,
             "steps": steps, "delta": delta, "epsilon": eps}  # fmt: skip
    return audit_dp_sgd(claim, uses_per_step=uses)


def _audit(*claim: Any) -> dict[str, Any]:
    """The audit of one claim (σ, C, q, steps, δ, ε, uses), computed once per process: it
    depends on nothing else (seeded), and the learning-rate tuning repeats each DP point's
    claim five times (16 s an audit at 1,200 rounds)."""
    return copy.deepcopy(_audit_memo(*claim))


def _check_settings(
    rounds: int | Convergence,
    batch_size: int,
    participation: float,
    server_lr: float | None,
    delta: float | None,
) -> None:
    if not isinstance(rounds, Convergence) and rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if not 0 < participation <= 1:
        raise ValueError(f"participation must be in (0, 1], got {participation}")
    if server_lr is not None and not server_lr > 0:
        raise ValueError(f"server_lr must be positive, got {server_lr}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _round_total(
    model: nn.Module,
    train_split: Split,
    shards: list[torch.Tensor],
    defence: Defence,
    gen: torch.Generator,
    *,
    batch_size: int,
    local_steps: int,
    lr: float,
    local_batch: int | None,
) -> dict[str, torch.Tensor]:
    """The sum of one round's defended client updates (each client: a batch of its shard)."""
    total: dict[str, torch.Tensor] = {}
    for shard in shards:
        take = min(batch_size, len(shard))
        rows = shard[torch.randperm(len(shard), generator=gen)[:take]]
        obs = defended_update(
            model,
            train_split.x[rows],
            train_split.y[rows],
            defence,
            local_steps=local_steps,
            lr=lr,
            local_batch=None if local_batch is None else min(local_batch, take),
            generator=gen,
        )
        for n, g in obs.gradients.items():
            total[n] = total[n] + g if n in total else g.detach().clone()
    return total


def federated_train(
    model_fn: Callable[[], nn.Module],
    train_split: Split,
    test_split: Split,
    *,
    clients: int = 10,
    rounds: int | Convergence = 100,
    batch_size: int = 16,
    local_steps: int = 1,
    lr: float = 0.1,
    defence: Defence | None = None,
    seed: int = 0,
    participation: float = 1.0,
    server_lr: float | None = None,
    local_batch: int | None = None,
    delta: float | None = None,
    monitor_size: int = MONITOR_SIZE,
) -> dict[str, Any]:
    """FedAvg simulation under ``defence`` (None: undefended); see the module docstring.
    ``model_fn`` is called under ``torch.manual_seed(seed)`` in a forked RNG state. Returns
    the utility (``accuracy`` per round, ``final_*`` losses and accuracies), the settings
    (``rounds``: the rounds run), ``convergence`` (None for a fixed number of rounds), the DP
    accounting of "dp" (else ``epsilon`` None), ``seconds`` and ``model``."""
    _check_settings(rounds, batch_size, participation, server_lr, delta)
    chosen = defence if defence is not None else NoDefence()
    start = time.perf_counter()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_fn()
    gen = torch.Generator().manual_seed(seed)
    shards = shard_indices(len(train_split), clients, gen)
    settings: dict[str, Any] = {
        "rounds": rounds,
        "clients": clients,
        "clients_per_round": max(1, round(participation * clients)),
        "batch_size": batch_size,
        "local_steps": local_steps,
        "lr": lr,
        "server_lr": lr if server_lr is None else server_lr,
        "seed": seed,
    }
    clients_data = (train_split, shards, chosen.training_defence(), gen, local_batch)
    watched = (
        monitor_sample(train_split, monitor_size, seed),
        monitor_sample(test_split, monitor_size, seed + 1),
    )
    accuracy, convergence = _train_rounds(model, clients_data, settings, watched, rounds)
    settings["rounds"] = len(accuracy)
    result = _outcome(model, chosen, accuracy, train_split, test_split, settings)
    result["convergence"] = convergence
    result["monitored_examples"] = {"train": len(watched[0]), "test": len(watched[1])}
    if isinstance(chosen, DPSGD):
        result |= _dp_result(chosen, shards, local_batch, delta, settings)
    result["seconds"] = time.perf_counter() - start
    result["model"] = copy.deepcopy(model)
    return result


def _dp_result(
    dp: DPSGD,
    shards: list[torch.Tensor],
    local_batch: int | None,
    delta: float | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The run's DP accounting, δ = N^−1.1 (N examples over the shards) unless given."""
    sizes = [len(s) for s in shards]
    return dp_accounting(
        dp,
        shard_sizes=sizes,
        local_batch=local_batch,
        delta=float(sum(sizes)) ** -1.1 if delta is None else delta,
        **{k: settings[k] for k in ("clients_per_round", "rounds", "batch_size", "local_steps")},
    )


ClientsData = tuple[Split, list[torch.Tensor], Defence, torch.Generator, int | None]


def _train_rounds(
    model: nn.Module,
    clients_data: ClientsData,
    settings: dict[str, Any],
    watched: tuple[Split, Split],
    rounds: int | Convergence,
) -> tuple[list[float], dict[str, Any] | None]:
    """The test accuracy after every round, for a fixed number of rounds or until the rule
    says the training loss has converged (then also the rule's summary); ``watched``: the
    (training, test) samples the curves are measured on."""
    train_sample, test_sample = watched
    if not isinstance(rounds, Convergence):
        fixed = [_fedavg_round(model, clients_data, settings, test_sample) for _ in range(rounds)]
        return fixed, None
    monitor = rounds.monitor()
    accuracy: list[float] = []
    while True:
        accuracy.append(_fedavg_round(model, clients_data, settings, test_sample))
        if monitor.update(evaluate(model, train_sample)[0]):
            return accuracy, monitor.summary()


def _fedavg_round(
    model: nn.Module,
    clients_data: ClientsData,
    settings: dict[str, Any],
    test_split: Split,
) -> float:
    """One FedAvg round in place: draw the round's clients, average their defended updates,
    step the server; returns the test accuracy after it."""
    train_split, shards, defence, gen, local_batch = clients_data
    model.train()
    drawn = torch.randperm(settings["clients"], generator=gen)[: settings["clients_per_round"]]
    total = _round_total(
        model,
        train_split,
        [shards[k] for k in drawn.tolist()],
        defence,
        gen,
        batch_size=settings["batch_size"],
        local_steps=settings["local_steps"],
        lr=settings["lr"],
        local_batch=local_batch,
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.sub_(settings["server_lr"] * total[n] / len(drawn))
    return evaluate(model, test_split)[1]


def _outcome(
    model: nn.Module,
    defence: Defence,
    accuracy: list[float],
    train_split: Split,
    test_split: Split,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The trained model's utility with the run's settings (ε None unless DP adds it)."""
    test_loss, test_acc = evaluate(model, test_split)
    train_loss, train_acc = evaluate(model, train_split)
    return {
        "defence": getattr(defence, "name", type(defence).__name__),
        "defence_params": defence.params(),
        "accuracy": accuracy,
        "final_accuracy": test_acc,
        "final_test_loss": test_loss,
        "final_train_loss": train_loss,
        "final_train_accuracy": train_acc,
        **settings,
        "epsilon": None,
    }
