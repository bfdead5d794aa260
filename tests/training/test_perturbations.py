import pytest
import torch
import torch.nn.functional as F

from privlab.registry import MODELS
from privlab.training.perturbations import pgd, project, targeted_labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=5, hidden=[32]).eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_value_range(model, norm):
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 5, (64,))
    x_adv = pgd(model, x, y, eps=0.3, steps=5, norm=norm)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= 0.3 + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_untargeted_pgd_raises_the_loss_and_targeted_lowers_the_target_loss(model):
    torch.manual_seed(1)
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 5, (64,))
    before = F.cross_entropy(model(x), y)
    after = F.cross_entropy(model(pgd(model, x, y, eps=0.2, steps=10)), y)
    assert after > before
    t = (y + 1) % 5
    toward = F.cross_entropy(model(pgd(model, x, t, eps=0.2, steps=10, targeted=True)), t)
    assert toward < F.cross_entropy(model(x), t)


def test_pgd_does_not_touch_parameter_gradients(model):
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 5, (8,))
    pgd(model, x, y, eps=0.1, steps=3)
    assert all(p.grad is None for p in model.parameters())


def test_zero_budget_returns_the_input_and_errors_are_clear(model):
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    assert torch.equal(pgd(model, x, y, eps=0.0), x)
    with pytest.raises(ValueError, match="non-negative"):
        pgd(model, x, y, eps=-1.0)
    with pytest.raises(ValueError, match="unknown norm"):
        project(x, 0.1, "l1")  # type: ignore[arg-type]


def test_targeted_labels_lists_every_wrong_class():
    wrong = targeted_labels(torch.tensor([0, 2]), 4)
    assert wrong.tolist() == [[1, 2, 3], [0, 1, 3]]
