import pytest
import torch

from privlab.registry import MODELS
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8])


def _target(model, access, **kw):
    return Target(model, TargetInfo("t", 3, (1, 4, 4), eps=0.1), access, **kw)


def test_label_only_target_refuses_probabilities_and_gradients(model):
    t = _target(model, Access.LABELS)
    x, y = torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    assert t.predict(x).shape == (5,)
    with pytest.raises(
        AccessDenied, match=r"predict_proba\(\) needs access \['probs'\].*grants only \['labels'\]"
    ):
        t.predict_proba(x)
    with pytest.raises(AccessDenied, match="loss"):
        t.loss(x, y)
    with pytest.raises(AccessDenied, match="input_gradients"):
        t.differentiable_logits(x)
    with pytest.raises(AccessDenied, match="weights"):
        t.parameters()


def test_probs_grant_answers_probs_and_loss_but_not_logits(model):
    t = _target(model, Access.PROBS)
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    p = t.predict_proba(x)
    assert p.dtype == torch.float64  # confident predictions must not round to exactly 1.0
    assert torch.allclose(p.sum(1), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(t.loss(x, y), -p.log().gather(1, y[:, None]).squeeze(1), atol=1e-6)
    with pytest.raises(AccessDenied):
        t.logits(x)


def test_temperature_applies_to_every_output(model):
    x = torch.rand(5, 1, 4, 4) * 5
    hot = _target(model, Access.LOGITS | Access.PROBS)
    cold = _target(model, Access.LOGITS | Access.PROBS, temperature=4.0)
    assert torch.allclose(cold.logits(x), hot.logits(x) / 4)
    assert torch.equal(cold.predict(x), hot.predict(x))


def test_target_does_not_leak_parameter_gradients(model):
    t = _target(model, Access.PROBS | Access.INPUT_GRADIENTS | Access.WEIGHTS)
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    t.differentiable_logits(x).sum().backward()
    assert x.grad is not None
    assert all(v.grad is None for v in model.parameters())
    weights = t.parameters()
    weights["1.weight"].zero_()  # a copy: the deployed model is untouched
    assert model[1].weight.abs().sum() > 0


def test_access_parse_and_names():
    a = Access.parse(["probs", "input_gradients"])
    assert a.names() == ["probs", "input_gradients"]
    with pytest.raises(ValueError, match="unknown access 'prob'.*probs"):
        Access.parse(["prob"])


def test_confident_predictions_stay_distinguishable():
    """Logit gaps of 20 and 25 both round to p = 1.0 in float32; scores must still rank them."""
    lin = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]]))
    t = Target(lin, TargetInfo("t", 2, (1,)), Access.PROBS)
    x, y = torch.tensor([[20.0], [25.0]]), torch.tensor([0, 0])
    p = t.predict_proba(x)[:, 0]
    assert p[1] > p[0]
    loss = t.loss(x, y)
    assert loss[0] > loss[1] > 0
