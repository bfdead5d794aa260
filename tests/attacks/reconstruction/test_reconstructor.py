"""The reconstructor network's building blocks: generator shapes, Eq. 3, weight normalisation."""

import pytest
import torch

from privlab.attacks.reconstruction.reconstructor import (
    MLPReconstructor,
    ResidualGenerator,
    WeightNormaliser,
    adam,
    soft_min_loss,
)


@pytest.mark.parametrize("side, blocks", [(28, 2), (32, 3)])
def test_generator_maps_parameters_to_images_in_range(side, blocks):
    torch.manual_seed(0)
    gen = ResidualGenerator(2570 + 10, (1, side, side), width=8, blocks=blocks)
    out = gen(torch.randn(4, 2580))
    assert out.shape == (4, 1, side, side) and out.abs().max() <= 1
    assert MLPReconstructor(30, (1, 28, 28), width=16)(torch.randn(2, 30)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="start size"):
        ResidualGenerator(10, (1, 30, 30), blocks=2)


def test_the_stem_as_a_matrix_product_is_the_transposed_convolution():
    torch.manual_seed(0)
    gen = ResidualGenerator(12, (3, 28, 28), width=4, blocks=2)
    gen.eval()  # batch norm on running statistics: the output is a function of each input
    theta = torch.randn(5, 12)
    as_conv = gen.head(gen.blocks(gen.stem(theta[:, :, None, None])))
    torch.testing.assert_close(gen(theta), as_conv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gen(theta[3:4]), as_conv[3:4], rtol=1e-5, atol=1e-6)


def test_reconstructor_adam_is_torch_adam():
    torch.manual_seed(0)
    nets = [MLPReconstructor(6, (1, 2, 2), width=5) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [adam(nets[0].parameters(), 1e-2), torch.optim.Adam(nets[1].parameters(), lr=1e-2)]
    x = torch.randn(8, 6)
    for _ in range(5):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_soft_min_loss_interpolates_between_min_and_mean():
    recon = torch.zeros(1, 1, 2, 2)
    cands = torch.stack([torch.full((1, 2, 2), v) for v in (0.1, 0.5, 0.9)])[None]
    per = torch.tensor([0.5 * (v**2 + v) for v in (0.1, 0.5, 0.9)])
    assert soft_min_loss(recon, cands, alpha=0.0).item() == pytest.approx(per.mean().item())
    assert soft_min_loss(recon, cands, alpha=1e4).item() == pytest.approx(per.min().item())
    w = torch.softmax(-100 * per, 0)
    assert soft_min_loss(recon, cands).item() == pytest.approx(float((w * per).sum()), rel=1e-5)
    mask = torch.tensor([[False, True, True]])  # the closest candidate is padding
    assert soft_min_loss(recon, cands, mask, alpha=1e4).item() == pytest.approx(per[1].item())


def test_streaming_normaliser_matches_the_batch_statistics():
    theta = torch.randn(1000, 7) * torch.arange(1, 8) + 3
    norm = WeightNormaliser(covariance=True)
    for part in theta.split(137):
        norm.update(part)
    assert torch.allclose(norm.covariance(), torch.cov(theta.double().T, correction=0))
    assert torch.allclose(norm.mean, theta.double().mean(0))
    assert torch.allclose(norm.std(), theta.double().std(0, unbiased=False))
    z = norm(theta)
    assert torch.allclose(z.mean(0), torch.zeros(7), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(7), atol=1e-5)
