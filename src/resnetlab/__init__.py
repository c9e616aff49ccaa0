"""resnetlab: deep residual networks (He et al., 2015), exact.

Build any ResNet of the paper, look inside it, compare it, train it and reproduce the
paper's experiments. Start with :func:`create_model` and :func:`summarize`.
"""

from resnetlab.analysis import compare, summarize

# timm's create_model: model names, catalogue names and pretrained=True (resnetlab.interop).
from resnetlab.interop import create_model, load_torchvision_checkpoint
from resnetlab.models import list_models
from resnetlab.version import __version__

__all__ = [
    "__version__",
    "compare",
    "create_model",
    "list_models",
    "load_torchvision_checkpoint",
    "summarize",
]
