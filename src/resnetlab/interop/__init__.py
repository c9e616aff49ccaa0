"""Other people's checkpoints: foreign files and their key layouts (torchvision, timm,
akamaster), and the catalogue of published weights our models load.

Above :mod:`resnetlab.models` (which never imports this package): a layout is a map onto
our models' names, and a catalogue entry names one of our models.
"""

from resnetlab.errors import CheckpointError
from resnetlab.interop.compat import (
    ParityReport,
    from_akamaster,
    load_pretrained,
    load_torchvision_checkpoint,
    parity_report,
    resnetlab_name,
)
from resnetlab.interop.create import create_model, transform_of
from resnetlab.interop.fact_sheet import PublishedWeights
from resnetlab.interop.foreign_files import download_checkpoint, read_state_dict
from resnetlab.interop.transforms import EvalTransform
from resnetlab.interop.weights import get_weights, list_weights

__all__ = [
    "CheckpointError",
    "EvalTransform",
    "ParityReport",
    "PublishedWeights",
    "create_model",
    "download_checkpoint",
    "from_akamaster",
    "get_weights",
    "list_weights",
    "load_pretrained",
    "load_torchvision_checkpoint",
    "parity_report",
    "read_state_dict",
    "resnetlab_name",
    "transform_of",
]
