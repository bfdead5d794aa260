"""Stacked transfer-learning heads: identical to one-by-one SGD, and they learn."""

import pytest
import torch

from privlab.training.heads import (
    HeadSpec,
    build_head,
    flatten_heads,
    init_heads,
    train_heads,
    train_heads_loop,
)


def _sets(k, n, f, classes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, f, generator=gen)
    y = torch.arange(n).repeat(k, 1) % classes
    x = centres[y] + 0.8 * torch.randn(k, n, f, generator=gen)
    return x, y


@pytest.mark.parametrize(
    "spec",
    [
        HeadSpec(outputs=4),
        HeadSpec(outputs=4, hidden=8, sigma_init=0.1),
        HeadSpec(outputs=1, hidden=4, sigma_init=0.1, lr=0.1, pos_weight=10.0),
    ],
)
def test_stacked_training_equals_one_by_one_sgd(spec):
    classes = max(spec.outputs, 2)
    x, y = _sets(5, 12, 16, classes)
    if spec.outputs == 1:
        y = (y == 0).long()
    params = init_heads(spec, 5, 16, generator=torch.Generator().manual_seed(1))
    stacked = train_heads(spec, params, x, y)
    loop = train_heads_loop(spec, params, x, y)
    for name in params:
        assert torch.allclose(stacked[name], loop[name], atol=1e-6), name
        assert not torch.equal(stacked[name], params[name])  # training moved every parameter


def test_heads_learn_their_training_sets():
    spec = HeadSpec(outputs=4, sigma_init=0.002, lr=0.5, epochs=100)
    x, y = _sets(8, 40, 16, 4)
    params = train_heads(spec, init_heads(spec, 8, 16, generator=torch.Generator()), x, y)
    head = build_head(spec, 16)
    accs = []
    for i in range(8):
        with torch.no_grad():
            for name, p in head.named_parameters():
                p.copy_(params[name][i])
            accs.append(float((head(x[i]).argmax(1) == y[i]).float().mean()))
    assert min(accs) > 0.9


def test_recipe_defaults_and_shapes():
    spec = HeadSpec()
    assert spec.epochs_for(10) == 32 and spec.epochs_for(40) == 50  # 26 + 3N/5
    params = init_heads(spec, 3, 256, generator=torch.Generator().manual_seed(0))
    assert flatten_heads(params).shape == (3, 2570)  # D_Θ of the paper's MNIST head
    assert torch.equal(params["0.bias"], torch.zeros(3, 10))
    assert params["0.weight"].std().item() == pytest.approx(0.002, rel=0.05)
    with pytest.raises(ValueError, match="K×N×F"):
        train_heads(spec, params, torch.zeros(3, 256), torch.zeros(3, dtype=torch.long))


def test_chunking_does_not_change_the_heads():
    spec = HeadSpec(outputs=4, hidden=8, sigma_init=0.1)
    x, y = _sets(7, 10, 16, 4)
    params = init_heads(spec, 7, 16, generator=torch.Generator().manual_seed(2))
    whole, chunked = train_heads(spec, params, x, y), train_heads(spec, params, x, y, chunk=3)
    assert all(torch.equal(whole[k], chunked[k]) for k in params)
