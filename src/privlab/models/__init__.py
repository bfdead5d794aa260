"""Model architectures (no torchvision), registered by name.

Every factory takes ``input_shape`` and ``num_classes`` first (keyword-only) and returns an
``nn.Module`` mapping a batch N×C×H×W (or N×D) to logits N×num_classes.
"""

from privlab.models import cnn, mlp, user, vgg, wide_resnet  # noqa: F401  (registration)
from privlab.models.temperature import TemperatureScaled

__all__ = ["TemperatureScaled"]
