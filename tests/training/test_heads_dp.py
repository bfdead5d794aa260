"""DP-SGD heads: explicit per-sample clipping matches a naive implementation; ε matches Opacus."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from privlab.training.heads import HeadDP, HeadSpec, init_heads, train_heads_dp


def _data(n=10, f=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(classes, f, generator=gen)[y] + torch.randn(n, f, generator=gen)
    return x, y


def test_batched_dp_sgd_equals_a_naive_per_sample_loop():
    spec = HeadSpec(outputs=3, sigma_init=0.1, lr=0.1, epochs=4)
    dp = HeadDP(clip=0.7, noise_multiplier=0.5)
    x, y = _data()
    params = init_heads(spec, 1, 6, generator=torch.Generator().manual_seed(1))
    fast = train_heads_dp(
        spec, dp, params, x[None], y[None], generator=torch.Generator().manual_seed(2)
    )
    # naive: autograd per example, clip, Poisson mask, noise, same generator order
    gen = torch.Generator().manual_seed(2)
    w, b = params["0.weight"][0].clone(), params["0.bias"][0].clone()
    n, q = len(y), dp.sample_rate(len(y))
    for _ in range(4 * dp.batches_per_epoch(n)):
        total_w, total_b = torch.zeros_like(w), torch.zeros_like(b)
        chosen = torch.rand(1, n, generator=gen)[0] < q
        for i in range(n):
            wi, bi = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
            gw, gb = torch.autograd.grad(
                F.cross_entropy((x[i] @ wi.T + bi)[None], y[i : i + 1]), (wi, bi)
            )
            norm = torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum())
            scale = min(1.0, dp.clip / float(norm))
            if chosen[i]:
                total_w += scale * gw
                total_b += scale * gb
        total_w += dp.noise_multiplier * dp.clip * torch.randn(1, *w.shape, generator=gen)[0]
        total_b += dp.noise_multiplier * dp.clip * torch.randn(1, *b.shape, generator=gen)[0]
        w = w - spec.lr * (total_w / (q * n) + spec.weight_decay * w)
        b = b - spec.lr * (total_b / (q * n) + spec.weight_decay * b)
    assert torch.allclose(fast["0.weight"][0], w, atol=1e-5)
    assert torch.allclose(fast["0.bias"][0], b, atol=1e-5)


def test_epsilon_and_sampling_match_opacus_on_one_model():
    from opacus import PrivacyEngine

    spec, dp, n = HeadSpec(outputs=3, epochs=5), HeadDP(clip=4.0, noise_multiplier=1.3), 10
    x, y = _data(n)
    head = torch.nn.Linear(6, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=n - 1)
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, opt, private_loader = engine.make_private(
            module=head,
            optimizer=torch.optim.SGD(
                head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay
            ),
            data_loader=loader,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.clip,
            poisson_sampling=True,
        )
        for _ in range(spec.epochs_for(n)):
            for xb, yb in private_loader:
                if len(yb) == 0:
                    continue
                opt.zero_grad()
                F.cross_entropy(module(xb), yb).backward()
                opt.step()
    assert private_loader.sample_rate == pytest.approx(dp.sample_rate(n))
    assert len(private_loader) == dp.batches_per_epoch(n)
    assert engine.get_epsilon(dp.delta(n)) == pytest.approx(
        dp.epsilon(n, spec.epochs_for(n)), rel=1e-9
    )
    # calibration: the noise for that ε spends it back
    sigma = HeadDP.noise_for(8.0, n, 32)
    assert HeadDP(noise_multiplier=sigma).epsilon(n, 32) == pytest.approx(8.0, rel=0.02)


def test_noise_destroys_what_the_heads_learn():
    spec = HeadSpec(outputs=3, sigma_init=0.002, lr=0.5, epochs=40)
    x, y = _data(30, seed=3)
    xs, ys = x[None].repeat(20, 1, 1), y[None].repeat(20, 1)
    params = init_heads(spec, 20, 6, generator=torch.Generator().manual_seed(0))

    def accuracy(sigma):
        out = train_heads_dp(
            spec,
            HeadDP(clip=1.0, noise_multiplier=sigma),
            params,
            xs,
            ys,
            generator=torch.Generator().manual_seed(5),
        )
        logits = torch.baddbmm(out["0.bias"][:, None], xs, out["0.weight"].transpose(1, 2))
        return float((logits.argmax(2) == ys).float().mean())

    assert accuracy(0.0) > 0.8 and accuracy(50.0) < 0.6


def test_dp_sgd_on_mlp_heads_equals_a_naive_per_sample_loop():
    """Linear → ReLU → Linear heads (Balle et al.'s DP arm on the RecoNN arm's MLP): the
    explicit per-layer per-sample gradients against autograd on one example at a time."""
    spec = HeadSpec(outputs=3, hidden=4, sigma_init=0.3, lr=0.1, epochs=3)
    dp = HeadDP(clip=0.5, noise_multiplier=0.5)
    x, y = _data()
    params = init_heads(spec, 1, 6, generator=torch.Generator().manual_seed(1))
    fast = train_heads_dp(
        spec, dp, params, x[None], y[None], generator=torch.Generator().manual_seed(2)
    )
    gen = torch.Generator().manual_seed(2)
    names = ["2.weight", "2.bias", "0.weight", "0.bias"]  # the noise is drawn in this order
    p = {k: params[k][0].clone() for k in names}
    n, q = len(y), dp.sample_rate(len(y))

    def loss(ps: dict, i: int) -> torch.Tensor:
        hidden = (x[i] @ ps["0.weight"].T + ps["0.bias"]).relu()
        return F.cross_entropy((hidden @ ps["2.weight"].T + ps["2.bias"])[None], y[i : i + 1])

    for _ in range(3 * dp.batches_per_epoch(n)):
        total = {k: torch.zeros_like(v) for k, v in p.items()}
        chosen = torch.rand(1, n, generator=gen)[0] < q
        for i in range(n):
            leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
            grads = dict(
                zip(
                    names,
                    torch.autograd.grad(loss(leaves, i), [leaves[k] for k in names]),
                    strict=True,
                )
            )
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
            if chosen[i]:
                for k in names:
                    total[k] += min(1.0, dp.clip / float(norm)) * grads[k]
        for k in names:
            total[k] += (
                dp.noise_multiplier * dp.clip * torch.randn(1, *p[k].shape, generator=gen)[0]
            )
        p = {k: p[k] - spec.lr * (total[k] / (q * n) + spec.weight_decay * p[k]) for k in names}
    for k in names:
        assert torch.allclose(fast[k][0], p[k], atol=1e-5), k
