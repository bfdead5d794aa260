"""Tests for privlab.metrics.robustness: APGD-CE (Croce & Hein 2020) and robust accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privlab.data.bundle import DataBundle, Split
from privlab.metrics.robustness import apgd_ce, apgd_checkpoints, robust_accuracy
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training.loop import TrainSpec, train
from privlab.training.regime import Regime

EPS = 0.1


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The attacks here run on tiny tensors, where a second intra-op thread only adds
    synchronisation (and stalls badly on a busy 2-core machine); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return DATASETS.build("digits", seed=0)


@pytest.fixture(scope="module")
def test_split(digits: DataBundle) -> Split:
    return Split(digits.nonmembers.x[:300], digits.nonmembers.y[:300])


def _train(bundle: DataBundle, regime: Regime) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=[64]
    )
    spec = TrainSpec(epochs=8, batch_size=64, lr=1e-2)
    return train(model, bundle.members, regime, spec, seed=0).model


@pytest.fixture(scope="module")
def natural(digits: DataBundle) -> nn.Module:
    return _train(digits, REGIMES.build("natural"))


@pytest.fixture(scope="module")
def adv_trained(digits: DataBundle) -> nn.Module:
    return _train(digits, REGIMES.build("pgd_at", eps=EPS, steps=3))


def _random_mlp(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10)
    )


# --- checkpoint schedule --------------------------------------------------------------------


def test_checkpoints_match_hand_computation() -> None:
    # p = 0, .22, .41 (+.19), .57 (+.16), .70 (+.13), .80 (+.10), .87 (+.07), .93 (+.06),
    # .99 (+.06); the next, 1.05, is past the end.
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    # ⌈2.2⌉, ⌈4.1⌉, ⌈5.7⌉, 7, 8, ⌈8.7⌉, ⌈9.3⌉; ⌈9.9⌉ = 10 again is dropped.
    assert apgd_checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]
    assert apgd_checkpoints(1) == [0, 1]
    assert apgd_checkpoints(0) == [0]
    with pytest.raises(ValueError):
        apgd_checkpoints(-1)


# --- the attack itself ----------------------------------------------------------------------


@pytest.mark.parametrize("clip", [(0.0, 1.0), (0.1, 0.9)])
def test_apgd_stays_in_ball_and_value_range(digits: DataBundle, clip: tuple[float, float]) -> None:
    x = digits.population.x[:64].clamp(*clip)  # digits are full of exact 0s and 1s
    y = digits.population.y[:64]
    adv = apgd_ce(_random_mlp(), x, y, eps=EPS, steps=30, clip=clip, seed=0)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert adv.min() >= clip[0] and adv.max() <= clip[1]
    assert (adv - x).abs().max() > 0.9 * EPS  # it did move, up to the boundary


def test_apgd_restores_mode_and_leaves_parameters_without_grads(digits: DataBundle) -> None:
    model = _random_mlp(dropout=0.5).train()
    x, y = digits.population.x[:32], digits.population.y[:32]
    a = apgd_ce(model, x, y, eps=EPS, steps=20, seed=1)
    b = apgd_ce(model, x, y, eps=EPS, steps=20, seed=1)
    assert model.training  # restored
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(a, b)  # eval mode during the attack: dropout off, so deterministic
    robust_accuracy(model, x, y, eps=EPS, steps=5)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_apgd_reaches_the_vertex_optimum_of_a_linear_model() -> None:
    """Two-class linear logits [0, w·x + b], label 0: CE = softplus(w·x + b) is maximised at
    x + ε·sign(w), clipped to [0, 1]."""
    torch.manual_seed(0)
    w, b = torch.randn(20), torch.tensor(0.3)
    x = torch.rand(16, 20)
    y = torch.zeros(16, dtype=torch.long)

    def forward(z: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros(len(z)), z @ w + b], dim=1)

    adv = apgd_ce(forward, x, y, eps=EPS, steps=10, seed=0)
    optimum = (x + EPS * w.sign()).clamp(0, 1)
    torch.testing.assert_close(adv, optimum)


def test_step_size_halving_converges_to_an_interior_maximum() -> None:
    """Logits [0, −‖x − c‖²], label 0: the loss peaks at c, strictly inside the ball. Signed
    steps of a fixed size oscillate around c; APGD's checkpoints must halve η and home in."""
    torch.manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(8, 10)
    c = x + (torch.rand_like(x) - 0.5) * EPS  # within ε/2 of x
    y = torch.zeros(8, dtype=torch.long)

    def forward(z: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros(len(z)), -((z - c) ** 2).sum(1)], dim=1)

    adv = apgd_ce(forward, x, y, eps=EPS, steps=100, seed=0)
    assert (adv - c).abs().max() < 0.05 * EPS  # without halving η stays 2ε


def test_iterates_follow_algorithm_1() -> None:
    """Replay the recorded iterates against the update rule: a plain first step with η = 2ε,
    then momentum α = 0.75 until the first checkpoint (22 of 100 steps), where oscillating
    examples halve η and restart from their best point; the best iterate is returned."""
    torch.manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(8, 10)
    c = x + (torch.rand_like(x) - 0.5) * EPS
    y = torch.zeros(8, dtype=torch.long)
    seen: list[torch.Tensor] = []

    def logits(z: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros(len(z)), -((z - c) ** 2).sum(1)], dim=1)

    def forward(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.detach().clone())
        return logits(z)

    adv = apgd_ce(forward, x, y, eps=EPS, steps=100, seed=0)
    assert len(seen) == 101  # one forward (and input gradient) per iterate

    def loss_grad(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.clone().requires_grad_(True)
        loss = F.cross_entropy(logits(z), y, reduction="none")
        return loss.detach(), torch.autograd.grad(loss.sum(), z)[0]

    def project(v: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(v, x - EPS), x + EPS).clamp(0, 1)

    def step(cur: torch.Tensor, prev: torch.Tensor, grad: torch.Tensor, eta: float):
        z = project(cur + eta * grad.sign())
        return project(cur + 0.75 * (z - cur) + 0.25 * (cur - prev))

    losses, grads = zip(*(loss_grad(z) for z in seen), strict=True)
    assert (seen[0] - x).abs().max() <= EPS  # random start inside the ball
    torch.testing.assert_close(seen[1], project(seen[0] + 2 * EPS * grads[0].sign()))
    for k in range(1, 22):
        torch.testing.assert_close(seen[k + 1], step(seen[k], seen[k - 1], grads[k], 2 * EPS))
    # checkpoint w₁ = 22: either go on, or halve η and restart (no momentum) from the best
    best = torch.stack(losses[:23]).argmax(0)
    rows = torch.arange(8)
    x_best = torch.stack(seen[:23])[best, rows]
    g_best = torch.stack(grads[:23])[best, rows]
    go_on = step(seen[22], seen[21], grads[22], 2 * EPS)
    restart = step(x_best, x_best, g_best, EPS)
    halved = (seen[23] - restart).abs().flatten(1).amax(1) < 1e-6
    kept = (seen[23] - go_on).abs().flatten(1).amax(1) < 1e-6
    assert bool((halved | kept).all()) and bool(halved.any())
    # the returned point is the highest-loss iterate (nothing is misclassified here)
    top = torch.stack(losses).argmax(0)  # the first of equal maxima, as APGD keeps it
    assert torch.equal(adv, torch.stack(seen)[top, rows])


def test_seed_makes_apgd_reproducible(digits: DataBundle) -> None:
    model = _random_mlp()
    x, y = digits.population.x[:32], digits.population.y[:32]
    a = apgd_ce(model, x, y, eps=EPS, steps=10, seed=3)
    b = apgd_ce(model, x, y, eps=EPS, steps=10, seed=3)
    c = apgd_ce(model, x, y, eps=EPS, steps=10, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


class _Tripwire(nn.Module):
    """Two classes, flat in the input (zero gradient), inputs centred on 0.5. ``"offset"``:
    class 1 iff the first coordinate exceeds 0.5 + ``threshold``. ``"exact"``: class 1 iff the
    input is exactly the all-0.5 point (so every perturbation is classified as class 0)."""

    def __init__(self, kind: str, threshold: float = 0.0) -> None:
        super().__init__()
        self.kind, self.threshold = kind, threshold

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1)
        if self.kind == "offset":
            hit = flat[:, 0] > 0.5 + self.threshold
        else:
            hit = (flat == 0.5).all(dim=1)
        logits = torch.stack([(~hit).float(), hit.float()], dim=1)
        return logits + 0.0 * flat.sum(dim=1, keepdim=True)


def test_restarts_attack_the_survivors_again() -> None:
    """Without gradient, success depends on the random start alone (chance 1/4 each)."""
    model = _Tripwire("offset", threshold=0.5 * EPS)
    x, y = torch.full((400, 4), 0.5), torch.zeros(400, dtype=torch.long)

    def fooled(restarts: int) -> torch.Tensor:
        adv = apgd_ce(model, x, y, eps=EPS, steps=5, restarts=restarts, seed=0)
        assert (adv - x).abs().max() <= EPS + 1e-6
        return model(adv).argmax(1) != y

    one, three = fooled(1), fooled(3)
    assert bool((one <= three).all())  # the first run is the same; restarts only add
    assert 0.15 < one.float().mean() < 0.35
    assert 0.45 < three.float().mean() < 0.7  # 1 − (3/4)³ ≈ 0.58


# --- robust accuracy ------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ["apgd_ce", "pgd"])
def test_zero_eps_gives_clean_accuracy(natural: nn.Module, test_split: Split, attack) -> None:
    r = robust_accuracy(natural, test_split.x, test_split.y, eps=0.0, attack=attack, steps=10)
    assert r["robust_acc"] == r["clean_acc"]
    assert r["loss_increase"] == 0.0
    assert set(r) == {"attack", "eps", "steps", "clean_acc", "robust_acc", "loss_increase"}


@pytest.mark.parametrize("attack", ["apgd_ce", "pgd"])
def test_robust_requires_the_clean_prediction_right_too(attack) -> None:
    """Misclassified at x, right everywhere else: x_adv is right but the example is not robust."""
    x, y = torch.full((20, 4), 0.5), torch.zeros(20, dtype=torch.long)
    r = robust_accuracy(_Tripwire("exact"), x, y, eps=EPS, attack=attack, steps=3)
    assert r["clean_acc"] == 0.0 and r["robust_acc"] == 0.0
    assert r["loss_increase"] < 0  # the attack could only find lower-loss points


def test_apgd_is_at_least_as_strong_as_pgd10(natural: nn.Module, test_split: Split) -> None:
    x, y = test_split.x, test_split.y
    apgd = robust_accuracy(natural, x, y, eps=EPS, attack="apgd_ce", steps=100)
    pgd10 = robust_accuracy(natural, x, y, eps=EPS, attack="pgd", steps=10)
    assert apgd["clean_acc"] == pgd10["clean_acc"] > 0.85
    assert apgd["robust_acc"] <= apgd["clean_acc"]
    assert apgd["robust_acc"] <= pgd10["robust_acc"] + 0.01
    assert apgd["robust_acc"] < apgd["clean_acc"] - 0.3  # a natural model is not robust
    assert apgd["loss_increase"] > 0.0
    assert apgd["loss_increase"] >= pgd10["loss_increase"] - 0.01
    assert (apgd["attack"], apgd["eps"], apgd["steps"]) == ("apgd_ce", EPS, 100)


def test_adversarial_training_raises_apgd_robust_accuracy(
    natural: nn.Module, adv_trained: nn.Module, test_split: Split
) -> None:
    x, y = test_split.x, test_split.y
    nat = robust_accuracy(natural, x, y, eps=EPS, steps=50)
    rob = robust_accuracy(adv_trained, x, y, eps=EPS, steps=50)
    assert rob["robust_acc"] > nat["robust_acc"] + 0.1
    assert rob["loss_increase"] < nat["loss_increase"]


def test_apgd_loss_increase_is_per_example_non_negative(
    natural: nn.Module, test_split: Split
) -> None:
    x, y = test_split.x, test_split.y
    adv = apgd_ce(natural, x, y, eps=EPS, steps=50, seed=0)
    with torch.no_grad():
        gain = F.cross_entropy(natural(adv), y, reduction="none") - F.cross_entropy(
            natural(x), y, reduction="none"
        )
    assert (gain >= 0).float().mean() >= 0.99
    assert gain.mean() > 0


@pytest.mark.parametrize("attack", ["apgd_ce", "pgd"])
def test_seed_makes_robust_accuracy_reproducible(
    natural: nn.Module, test_split: Split, attack
) -> None:
    x, y = test_split.x[:100], test_split.y[:100]
    state = torch.get_rng_state()
    a = robust_accuracy(natural, x, y, eps=EPS, attack=attack, steps=10, batch_size=32, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = robust_accuracy(natural, x, y, eps=EPS, attack=attack, steps=10, batch_size=32, seed=5)
    c = robust_accuracy(natural, x, y, eps=EPS, attack=attack, steps=10, batch_size=32, seed=6)
    assert a == b
    assert a["loss_increase"] != c["loss_increase"]


def test_invalid_arguments(natural: nn.Module, test_split: Split) -> None:
    x, y = test_split.x[:4], test_split.y[:4]
    with pytest.raises(ValueError):
        robust_accuracy(natural, x, y, eps=EPS, attack="fgsm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        apgd_ce(natural, x, y, eps=-0.1)
    with pytest.raises(ValueError):
        apgd_ce(natural, x, y, eps=EPS, restarts=0)
