"""VGG-11/13/16/19 with and without BN (Simonyan & Zisserman 2015), the network the
ResNet paper compares against (Fig. 3). torchvision's layout, so its keys match."""

from __future__ import annotations

from dataclasses import replace

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
            nn.Linear(4096, spec.num_classes),
        )
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

    def get_classifier(self) -> nn.Linear:
        last = self.classifier[-1]
        assert isinstance(last, nn.Linear)
        return last

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer with a fresh one of ``num_classes`` outputs."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise InvalidValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self.classifier[-1] = new
        self.spec = replace(self.spec, num_classes=num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out: Tensor = self.features(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.flatten(self.avgpool(self.features(x))))
        return out
