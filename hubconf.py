"""torch.hub entry points: one per registered resnetlab model, named as the model.

    torch.hub.load("/path/to/resnetlab", "resnet50", source="local", num_classes=10)
    torch.hub.list("/path/to/resnetlab", source="local")

Each entry point takes ``pretrained=False`` and, as keywords, the model's spec fields
(``num_classes``, ``shortcut``, ``placement``, …), which go to ``create_model``. resnetlab
publishes no weights, so ``pretrained=True`` raises; published torchvision, timm and
akamaster files load with ``resnetlab.interop.load_pretrained`` (docs/interop.md).

torch.hub lists every public callable of this module, so everything else here is a module
or starts with an underscore.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import typing

dependencies = ["torch"]

# From a checkout (torch.hub's GitHub download, or a clone) resnetlab lives in src/.
if importlib.util.find_spec("resnetlab") is None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "src"))

from torch import nn  # noqa: E402

from resnetlab import models  # noqa: E402


def _entry_point(name: str) -> typing.Callable[..., nn.Module]:
    description = models.get_entry(name).description

    def entry(*, pretrained: bool = False, **kwargs: typing.Any) -> nn.Module:
        if pretrained:
            raise ValueError(
                f"resnetlab publishes no pretrained weights for {name}; build it with "
                "pretrained=False and load a published file with "
                "resnetlab.interop.load_pretrained (docs/interop.md)"
            )
        return models.create_model(name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (
        f"{description}.\n\n"
        f"Keywords go to ``create_model({name!r}, ...)`` (``num_classes``, …); "
        "``pretrained=True`` raises: resnetlab publishes no weights."
    )
    return entry


for _name in models.list_models():
    globals()[_name] = _entry_point(_name)
