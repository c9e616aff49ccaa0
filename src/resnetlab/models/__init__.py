"""Models: specs, blocks, the one ResNet, VGG, the registry and the named zoo.

Foreign checkpoints, key layouts and the published weights are :mod:`resnetlab.interop`'s
(which imports this package, never the other way round)."""

from resnetlab.errors import CheckpointError
from resnetlab.models import zoo as _zoo  # noqa: F401  (registers the named models)
from resnetlab.models.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ZeroPadShortcut,
)
from resnetlab.models.features import FeatureInfo, FeatureNet
from resnetlab.models.registry import (
    ModelEntry,
    UnknownModelError,
    build,
    create_model,
    get_entry,
    list_models,
    model_entries,
    model_spec,
    register_model,
)
from resnetlab.models.resnet import ResNet
from resnetlab.models.spec import ResNetSpec, VGGSpec
from resnetlab.models.vgg import VGG

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "CheckpointError",
    "FeatureInfo",
    "FeatureNet",
    "ModelEntry",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "ResNetSpec",
    "UnknownModelError",
    "VGGSpec",
    "ZeroPadShortcut",
    "build",
    "create_model",
    "get_entry",
    "list_models",
    "model_entries",
    "model_spec",
    "register_model",
]
