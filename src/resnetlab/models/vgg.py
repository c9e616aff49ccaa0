"""VGG-11/13/16/19 with and without BN (Simonyan & Zisserman 2015), the network the
ResNet paper compares against (Fig. 3). torchvision's layout, so its keys match."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.spec import VGGSpec


class VGG(nn.Module):
    """Input ``(N, in_channels, H, W)`` with H, W ≥ 32; output ``(N, num_classes)``.

    The adaptive 7×7 pool makes the classifier independent of the input size (at 224×224
    it is a no-op, as in the paper)."""

    def __init__(self, spec: VGGSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        in_ch = spec.in_channels
        for v in spec.config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            assert isinstance(v, int)
            layers.append(nn.Conv2d(in_ch, v, kernel_size=3, padding=1))
            if spec.batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(4096, spec.num_classes) if spec.num_classes else nn.Identity(),
        )
        self.num_features = 4096  # timm's: the width before the last linear layer
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                assert m.bias is not None
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

        # timm's description of the input it expects (224 crops of 256, ImageNet mean/std).
        self.pretrained_cfg: dict[str, Any] = {
            "tag": None,
            "input_size": (spec.in_channels, 224, 224),
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "num_classes": spec.num_classes,
            "first_conv": "features.0",
            "classifier": "classifier.6",
        }

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def get_classifier(self) -> nn.Module:
        """The last linear layer; ``nn.Identity`` after ``reset_classifier(0)``."""
        last: nn.Module = self.classifier[-1]
        return last

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer with a fresh one of ``num_classes`` outputs; 0
        removes it (timm): the model outputs the 4,096 features before it."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise InvalidValueError(
                f"num_classes must be a positive integer (or 0: features), got {num_classes!r}"
            )
        ref = next(self.parameters())
        new = nn.Linear(4096, num_classes).to(ref.device, ref.dtype) if num_classes else None
        self.classifier[-1] = new if new is not None else nn.Identity()
        self.spec = replace(self.spec, num_classes=num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out: Tensor = self.features(x)
        return out

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Feature map → logits; ``pre_logits=True`` stops before the last linear layer."""
        x = self.flatten(self.avgpool(x))
        if pre_logits:
            out: Tensor = self.classifier[:-1](x)
            return out
        logits: Tensor = self.classifier(x)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.features(x))
