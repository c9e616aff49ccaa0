"""Models: specs, blocks, the one ResNet, VGG, the registry and the named zoo."""

from resnetlab.models import zoo as _zoo  # noqa: F401  (registers the named models)
from resnetlab.models.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ZeroPadShortcut,
)
from resnetlab.models.compat import (
    CheckpointError,
    ParityReport,
    download_checkpoint,
    from_akamaster,
    load_pretrained,
    load_torchvision_checkpoint,
    parity_report,
    read_state_dict,
    resnetlab_name,
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
    "ParityReport",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "ResNetSpec",
    "UnknownModelError",
    "VGGSpec",
    "ZeroPadShortcut",
    "build",
    "create_model",
    "download_checkpoint",
    "from_akamaster",
    "get_entry",
    "list_models",
    "load_pretrained",
    "load_torchvision_checkpoint",
    "model_entries",
    "model_spec",
    "parity_report",
    "read_state_dict",
    "register_model",
    "resnetlab_name",
]
