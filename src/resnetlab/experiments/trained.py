"""A finished run's best checkpoint, rebuilt with its data and preprocessing, for the
experiments that evaluate trained models (responses, landscape, lesion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from resnetlab.data.datasets import eval_split_batches
from resnetlab.data.tensors import Split
from resnetlab.experiments.runs import RunRecord
from resnetlab.models.resnet import ResNet
from resnetlab.runtime.configured_data import load_run_data
from resnetlab.runtime.execution import Execution, to_input
from resnetlab.runtime.folder_layout import RunFolder


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
    def load(cls, record: RunRecord) -> Trained:
        ckpt = RunFolder(record.run_dir).checkpoint()
        bundle = load_run_data(ckpt.config, say=False)
        model = ckpt.load_model()
        assert isinstance(model, ResNet)
        return cls(record, model, bundle.train, bundle.val, bundle.test, ckpt.eval_preprocess)

    def batches(
        self, split: Split, images: int | None, seed: int, place: Execution
    ) -> list[tuple[Tensor, Tensor]]:
        """Up to ``images`` images of ``split`` (a seeded random subset), preprocessed
        without augmentation, placed for ``place`` once."""
        if images is not None and images < len(split):
            gen = torch.Generator().manual_seed(seed)
            split = split.subset(torch.randperm(len(split), generator=gen)[:images])
        out = []
        for x, y in eval_split_batches(split, self.pre, batch_size=250, device=place.device):
            out.append((to_input(x, place), y))
        return out
