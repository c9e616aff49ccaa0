"""The one parametric ResNet. Every named ResNet (ImageNet, CIFAR, plain, pre-activation,
wide, ResNeXt) is a :class:`~resnetlab.models.spec.ResNetSpec` handed to :class:`ResNet`.

Layout and attribute names follow torchvision (``conv1``, ``bn1``, ``maxpool``,
``layer1``…, ``fc``), so a torchvision/timm checkpoint loads with ``strict=True`` into the
matching model (see :mod:`resnetlab.interop.compat`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.blocks import (
    BasicBlock,
    Block,
    Bottleneck,
    DropPath,
    PreActBasicBlock,
    PreActBottleneck,
)
from resnetlab.models.spec import ResNetSpec


class MLPHead(nn.Sequential):
    """The fine-tuning head of a Keras ResNet-50 tutorial, after global average pooling:
    Dropout(p) → Linear(hidden) → ReLU → Dropout(p) → Linear(num_classes)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


def default_cfg(spec: ResNetSpec) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a freshly built net: the usual input of its family
    (CIFAR nets 32×32 as they are; ImageNet nets 224 crops of 256, bilinear), ImageNet's
    mean/std, no weights (``tag`` None)."""
    cifar = spec.stem == "cifar"
    return {
        "tag": None,
        "input_size": (spec.in_channels, 32, 32) if cifar else (spec.in_channels, 224, 224),
        "interpolation": "bilinear",
        "crop_pct": 1.0 if cifar else 0.875,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "num_classes": spec.num_classes,
        "first_conv": "conv1",
        "classifier": "fc",
    }


class ResNet(nn.Module):
    """A residual network built from a spec.

    Input ``(N, in_channels, H, W)``, float; output logits ``(N, num_classes)``. ImageNet
    models reduce the resolution 32×, CIFAR models 4×; any input large enough for that works.
    """

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        stem_ch = spec.scaled(spec.stem_width)

        if spec.stem == "imagenet":
            self.conv1 = nn.Conv2d(spec.in_channels, stem_ch, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(spec.in_channels, stem_ch, 3, stride=1, padding=1, bias=False)
        # A pre-activation CIFAR net leaves BN-ReLU to its first unit (He et al. 2016, §3).
        stem_norm = not (spec.preact and spec.stem == "cifar")
        self.bn1 = nn.BatchNorm2d(stem_ch) if stem_norm else None
        self.relu = nn.ReLU(inplace=True) if stem_norm else None
        self.maxpool = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if spec.stem == "imagenet" else None
        )

        in_ch = stem_ch
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(spec.layers)))
        for i, (name, blocks, planes) in enumerate(
            zip(self.stage_names, spec.layers, spec.widths, strict=True)
        ):
            stage, in_ch = self._make_stage(in_ch, spec.scaled(planes), blocks, 1 if i == 0 else 2)
            self.add_module(name, stage)
        self.num_features = in_ch

        # Pre-activation nets end their last unit without BN-ReLU; add it before pooling.
        self.final_norm = nn.BatchNorm2d(in_ch) if spec.preact else None
        self.final_relu = nn.ReLU(inplace=True) if spec.preact else None
        # The attribute keeps torchvision's name whichever pooling timm's global_pool picks.
        self.avgpool: nn.Module = (
            nn.AdaptiveMaxPool2d((1, 1)) if spec.global_pool == "max" else nn.AdaptiveAvgPool2d(1)
        )
        self.flatten = nn.Flatten(1)
        self.fc: nn.Module
        if spec.head == "mlp":
            self.drop = None
            self.fc = MLPHead(in_ch, spec.head_hidden, spec.num_classes, spec.head_dropout)
        else:
            self.drop = nn.Dropout(spec.head_dropout) if spec.head_dropout > 0 else None
            self.fc = nn.Linear(in_ch, spec.num_classes) if spec.num_classes else nn.Identity()
        self._init_weights()
        self._set_drop_path(spec.drop_path)
        # timm's description of the input a model expects; a catalogue entry's
        # (resnetlab.create_model("resnet50.tv2_in1k")) replaces this default.
        self.pretrained_cfg: dict[str, Any] = default_cfg(spec)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier; 0 after ``reset_classifier(0)`` (pooled features)."""
        return self.spec.num_classes

    def _set_drop_path(self, rate: float) -> None:
        """Huang et al. 2016's linear decay rule: block l of L drops with ``rate``·l/L, so
        the early blocks, whose features every later one uses, are rarely dropped. No module
        is added when ``rate`` is 0: the model is exactly the one without the option."""
        if rate <= 0:
            return
        blocks = self.blocks()
        for i, block in enumerate(blocks):
            block.drop_path = DropPath(rate * (i + 1) / len(blocks))

    def _make_stage(
        self, in_ch: int, planes: int, blocks: int, stride: int
    ) -> tuple[nn.Sequential, int]:
        spec = self.spec
        units: list[Block] = []
        for i in range(blocks):
            common = {
                "stride": stride if i == 0 else 1,
                "kernel_size": spec.kernel_size,
                "shortcut": spec.shortcut,
                "residual": spec.residual,
            }
            unit: Block
            if spec.block == "basic":
                cls_b = PreActBasicBlock if spec.preact else BasicBlock
                unit = cls_b(in_ch, planes, **common)  # type: ignore[arg-type]
                in_ch = planes
            else:
                cls_n = PreActBottleneck if spec.preact else Bottleneck
                unit = cls_n(
                    in_ch,
                    planes,
                    placement=spec.placement,
                    groups=spec.groups,
                    width_per_group=spec.width_per_group,
                    **common,  # type: ignore[arg-type]
                )
                in_ch = planes * spec.expansion
            units.append(unit)
        return nn.Sequential(*units), in_ch

    def _init_weights(self) -> None:
        # He et al. 2015 (§3.4) initialise convs with "MSRA" init [He et al., 2015b];
        # fan_out as in torchvision, so our fresh models match theirs statistically.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.spec.zero_init_residual and self.spec.residual:
            # Each residual branch starts as zero, so every block starts as the identity
            # (Goyal et al. 2017); pre-activation branches end in a conv, not a BN.
            for block in self.blocks():
                if isinstance(block, BasicBlock | Bottleneck):
                    nn.init.zeros_(block.last_norm().weight)
                else:
                    nn.init.zeros_(block.last_conv().weight)

    # ------------------------------------------------------------------ structure
    def stages(self) -> list[nn.Sequential]:
        """The residual stages in order (``layer1``, ``layer2``, …)."""
        return [getattr(self, name) for name in self.stage_names]

    def blocks(self) -> list[Block]:
        """Every residual unit in order."""
        return [block for stage in self.stages() for block in stage]  # type: ignore[misc]

    def get_classifier(self) -> nn.Module:
        """The last linear layer (the one :meth:`reset_classifier` replaces); an
        ``nn.Identity`` when the model has none (``num_classes`` 0, as in timm)."""
        last: nn.Module = self.fc[-1] if isinstance(self.fc, MLPHead) else self.fc
        return last

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a freshly initialised one of ``num_classes``
        outputs (for fine-tuning); everything else, the custom head included, is kept.

        ``num_classes=0`` removes the classifier as timm does: the whole head (a custom one
        included) becomes ``nn.Identity`` and the model outputs the pooled features
        ``(N, num_features)``."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise InvalidValueError(
                f"num_classes must be a positive integer (or 0: features), got {num_classes!r}"
            )
        ref = next(self.parameters())
        if num_classes == 0:
            self.fc = nn.Identity()
            self.spec = replace(self.spec, num_classes=0, head="linear")
            return
        old = self.get_classifier()
        width = old.in_features if isinstance(old, nn.Linear) else self.num_features
        new = nn.Linear(width, num_classes).to(ref.device, ref.dtype)
        if isinstance(self.fc, MLPHead):
            self.fc[-1] = new
        else:
            self.fc = new
        self.spec = replace(self.spec, num_classes=num_classes)

    # ------------------------------------------------------------------ forward
    def forward_stem(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.bn1 is not None and self.relu is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        return x

    def forward_stages(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Intermediate outputs: ``{"stem": …, "layer1": …, …}``, each ``(N, C, H, W)``.

        The last entry is the final feature map before pooling (after the closing BN-ReLU
        for pre-activation nets).
        """
        feats: OrderedDict[str, Tensor] = OrderedDict()
        x = self.forward_stem(x)
        feats["stem"] = x
        for name, stage in zip(self.stage_names, self.stages(), strict=True):
            x = stage(x)
            feats[name] = x
        if self.final_norm is not None and self.final_relu is not None:
            feats[self.stage_names[-1]] = self.final_relu(self.final_norm(x))
        return feats

    def forward_features(self, x: Tensor) -> Tensor:
        """The final feature map ``(N, num_features, H/32, W/32)`` (H/4 for CIFAR nets)."""
        x = self.forward_stem(x)
        for stage in self.stages():
            x = stage(x)
        if self.final_norm is not None and self.final_relu is not None:
            x = self.final_relu(self.final_norm(x))
        return x

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Pool the feature map ``(N, C, h, w)`` → ``(N, C)``, then the head; with
        ``pre_logits=True`` (timm) stop before the classifier: ``(N, num_features)``."""
        x = self.flatten(self.avgpool(x))
        if self.drop is not None:
            x = self.drop(x)
        if pre_logits:
            return x
        out: Tensor = self.fc(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
