"""torch.hub entry points: one per registered resnetlab model and one per catalogue name.

    torch.hub.load("/path/to/resnetlab", "resnet50_v1_5", source="local", num_classes=10)
    torch.hub.load("/path/to/resnetlab", "resnet50.tv2_in1k", source="local", pretrained=True)
    torch.hub.list("owner/resnetlab:main")  # a GitHub repository only (see below)

``torch.hub.list`` and ``torch.hub.help`` take a GitHub ``owner/name[:ref]`` (a repository
torch.hub has downloaded or cached), not a local folder: in a local checkout,
``resnetlab.list_models()`` and ``resnetlab.interop.list_weights()`` list the same names.

Each entry point is ``resnetlab.create_model(name, pretrained=…, **kwargs)``: keywords are
timm's (``num_classes``, ``in_chans``, ``drop_rate``, ``drop_path_rate``, ``global_pool``,
``features_only``, ``out_indices``) or the model's spec fields (``shortcut``, ``placement``,
…). ``pretrained=True`` loads the catalogue's file (fetched once against its SHA-256; offline,
one line says where to put it); a bare name whose published weights are another network's
(``resnet50``: the paper's placement here, v1.5 in timm) says which name to use.

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

from resnetlab import interop, models  # noqa: E402


def _entry_point(name: str, description: str) -> typing.Callable[..., nn.Module]:
    def entry(*, pretrained: bool = False, **kwargs: typing.Any) -> nn.Module:
        return interop.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (
        f"{description}.\n\n"
        f"``resnetlab.create_model({name!r}, pretrained=False, **kwargs)``: timm's keywords "
        "(``num_classes``, ``in_chans``, ``drop_rate``, …) or the model's spec fields."
    )
    return entry


for _name in models.list_models():
    globals()[_name] = _entry_point(_name, models.get_entry(_name).description)
for _w in interop.list_weights():
    globals()[_w.name] = _entry_point(_w.name, f"{_w.model} with {_w.name}'s weights")
