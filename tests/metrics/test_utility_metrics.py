import pytest
import torch

from privlab.metrics.utility import accuracy, adversarial_accuracy, per_example_loss


class Fixed(torch.nn.Module):
    """Predicts class 0 when the first pixel is below 0.5, else class 1."""

    def forward(self, x):
        first = x.flatten(1)[:, :1]
        return torch.cat([0.5 - first, first - 0.5], dim=1) * 10


def test_accuracy_known_values():
    x = torch.tensor([[0.1], [0.2], [0.9], [0.8]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(Fixed(), x, y, batch_size=3) == 0.75
    assert torch.isnan(torch.tensor(accuracy(Fixed(), x[:0], y[:0])))


def test_adversarial_accuracy_known_values():
    # Points at distance 0.1 and 0.4 from the decision boundary 0.5: an eps = 0.2 attack flips
    # only the first; eps = 0 changes nothing.
    x = torch.tensor([[0.4], [0.1]])
    y = torch.tensor([0, 0])
    assert adversarial_accuracy(Fixed(), x, y, eps=0.0, steps=5) == 1.0
    assert adversarial_accuracy(Fixed(), x, y, eps=0.2, steps=5) == 0.5
    assert adversarial_accuracy(Fixed(), x, y, eps=0.45, steps=10) == 0.0


def test_per_example_loss_matches_cross_entropy():
    x = torch.tensor([[0.1], [0.9]])
    y = torch.tensor([0, 0])
    loss = per_example_loss(Fixed(), x, y)
    logits = Fixed()(x)
    assert loss.tolist() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, reduction="none").tolist()
    )
