import pytest
import torch

from privlab.models import TemperatureScaled
from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES, Registry, UnknownComponentError


def test_every_registry_is_populated():
    assert {"digits", "mnist5k", "synthetic", "mnist_idx", "cifar10", "image_folder"} <= set(
        DATASETS.names()
    )
    assert {"mlp", "cnn_yale", "cnn_fmnist", "cnn_small", "vgg_small", "wide_resnet"} <= set(
        MODELS.names()
    )
    assert {"natural", "pgd_at", "dist_at", "trades", "label_smoothing", "dp_sgd"} <= set(
        REGIMES.names()
    )
    assert {"loss_threshold", "confidence", "adversarial_confidence", "inference_network"} <= set(
        ATTACKS.names()
    )


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownComponentError, match="unknown attack 'lria'.*loss_threshold"):
        ATTACKS.get("lria")


def test_duplicate_registration_is_refused():
    reg: Registry[object] = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(object)


def test_bad_parameter_names_the_component():
    with pytest.raises(TypeError, match="regime 'pgd_at'"):
        REGIMES.build("pgd_at", epsilon=0.1)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n != "user_model"])  # tests/auditing
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_every_model_maps_images_to_logits(name, shape):
    small = {
        "cnn_yale": {"scale": 1},
        "cnn_fmnist": {"width": 0.03},
        "vgg_small": {"channels": [4, 8]},
    }
    model = MODELS.build(name, input_shape=shape, num_classes=7, **small.get(name, {}))
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    out.sum().backward()  # differentiable end to end


def test_paper_cnn_widths_follow_the_capacity_scale():
    convs = [
        m
        for m in MODELS.build(
            "cnn_yale", input_shape=(1, 32, 32), num_classes=38, scale=2
        ).modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert [c.out_channels for c in convs] == [2, 2, 4, 4, 8, 8, 16, 16]
    assert [c.stride[0] for c in convs] == [1, 2] * 4
    wrn = MODELS.build("wide_resnet", input_shape=(3, 32, 32), num_classes=10, scale=2)
    widths = sorted({m.out_channels for m in wrn.modules() if isinstance(m, torch.nn.Conv2d)})
    assert widths == [16, 32, 64, 128]


def test_temperature_scaling_keeps_predictions_and_lowers_confidence():
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=10)
    x = torch.rand(50, 1, 8, 8) * 4
    hot, cold = model(x), TemperatureScaled(model, 10.0)(x)
    assert torch.equal(hot.argmax(1), cold.argmax(1))
    assert (cold.softmax(1).amax(1) <= hot.softmax(1).amax(1) + 1e-7).all()
    with pytest.raises(ValueError, match="positive"):
        TemperatureScaled(model, 0.0)
