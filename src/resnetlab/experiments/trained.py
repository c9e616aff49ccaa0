"""A finished run's best checkpoint, rebuilt with its data and preprocessing, for the
experiments that evaluate trained models (responses, landscape, lesion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from resnetlab.data.datasets import eval_split_batches
from resnetlab.data.tensors import ImageTensors, Split
from resnetlab.errors import InvalidValueError
from resnetlab.experiments.runs import Log, RunRecord
from resnetlab.models.resnet import ResNet
from resnetlab.train.checkpoint import load_checkpoint
from resnetlab.train.config import config_from_dict
from resnetlab.train.device import Placement
from resnetlab.train.loop import to_input
from resnetlab.train.runner import build_model, load_run_data, preprocess_for


@dataclass
class Trained:
    """A finished run's best checkpoint, ready to evaluate."""

    record: RunRecord
    model: ResNet
    train: Split
    val: Split
    test: Split | None
    pre: Any

    @classmethod
    def load(cls, record: RunRecord, log: Log) -> Trained:
        state = load_checkpoint(record.run_dir / "best.pt")
        cfg = config_from_dict(state["config"])
        bundle = load_run_data(cfg, lambda _s: None)
        model = build_model(cfg, len(bundle.classes), bundle.train.image_size[0], log)
        model.load_state_dict(state["model"])
        assert isinstance(model, ResNet)
        return cls(record, model.eval(), bundle.train, bundle.val, bundle.test,
                   preprocess_for(cfg, bundle))  # fmt: skip

    def batches(self, split: Split, images: int | None, seed: int,
                place: Placement) -> list[tuple[Tensor, Tensor]]:  # fmt: skip
        """Up to ``images`` images of ``split`` (a seeded random subset), preprocessed
        without augmentation, placed for ``place`` once."""
        if images is not None and images < len(split):
            if not isinstance(split, ImageTensors):
                raise InvalidValueError(
                    "a subset of a streamed split is not supported; omit --images"
                )
            gen = torch.Generator().manual_seed(seed)
            split = split.subset(torch.randperm(len(split), generator=gen)[:images])
        out = []
        for x, y in eval_split_batches(split, self.pre, batch_size=250, device=place.device):
            out.append((to_input(x, place), y))
        return out
