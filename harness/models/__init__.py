"""Models, built by name from `MODELS` for any class count and input channels.

- `registry`: `MODELS`, `build_model`, the input-size check, the classifier (never pruned)
- `cifar_resnet`, `vgg`, `imagenet`: the families; a new model is one ``@MODELS.register``
  builder in one of them (or a new module imported below)
- `pretrained`: ``--weights``, pretrained starts loaded with ``weights_only=True``
"""
from harness.models import cifar_resnet, imagenet, vgg  # noqa: F401  (registration happens on import)
from harness.models.registry import MODELS, build_model, check_input_size, classifier_modules, reinit_weights

__all__ = ["MODELS", "build_model", "check_input_size", "classifier_modules", "reinit_weights"]
