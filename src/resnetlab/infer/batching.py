"""The batch an inference runs in: what fits in memory, and what an int8 program takes.

Inference in eval mode works per image, so a batch too large to fit is the same computed in
pieces: ``eval --batch-size 10000`` at 128 px and ``predict`` of 6,000 photos in one batch
were killed by the kernel, and an int8 ``.pt2`` program (exported with a batch of at most
4,096) failed its guard on a larger one (``Guard failed: x.size()[0] <= 4096``). Both now
run in the largest batch that fits, and the commands say so in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from resnetlab.analysis.memory_estimate import BatchFit, batch_that_fits, check_memory
from resnetlab.errors import InvalidValueError
from resnetlab.infer.exported import OnnxModel

if TYPE_CHECKING:
    from resnetlab.data.augment import Preprocess
    from resnetlab.runtime.config import TrainConfig
    from resnetlab.runtime.execution import Execution


class Predictor(Protocol):
    """What sizing a batch reads of :class:`resnetlab.infer.predict.Predictor` (a protocol,
    so that this module, which the predictor uses, does not import it back)."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def config(self) -> TrainConfig: ...

    @property
    def place(self) -> Execution: ...

    @property
    def data_size(self) -> tuple[int, int, int]: ...

    @property
    def preprocess(self) -> Preprocess: ...


def fit_batch(p: Predictor, batch: int) -> BatchFit:
    """The batch ``p`` runs ``batch`` images in: at most what fits in the memory this
    process may still take (:func:`~resnetlab.analysis.memory_estimate.batch_that_fits`,
    on a meta copy of the model: nothing is allocated), and at most the int8 program's
    largest batch (:attr:`~resnetlab.infer.quantize.QuantizedNet.max_batch`)."""
    c, side = p.data_size[0], p.preprocess.image_size
    bound = getattr(p.model, "max_batch", None)
    limit = (int(bound), "the int8 program") if bound else None
    model = memory_model(p)
    if model is not None:
        return batch_that_fits(model, (batch, c, side, side), device=p.place.device, bound=limit)
    if limit is None or batch <= limit[0]:
        return BatchFit(batch, batch)
    return BatchFit.of(batch, limit[0], f"{limit[1]} takes batches of at most {limit[0]:,}")


def memory_model(p: Predictor) -> nn.Module | None:
    """The model whose fp32 eager run the estimate traces: ``p``'s own, or for an int8
    program or an ONNX file (neither runs on the meta device) the fp32 network they were
    made from, built on the meta device from the config (no memory); None if it cannot be
    built (the estimate is then skipped)."""
    if not isinstance(p.model, OnnxModel) and not hasattr(p.model, "max_batch"):
        return p.model
    from resnetlab.models import create_model

    cfg = p.config.model
    options = {**cfg.options, "num_classes": len(p.classes), "in_channels": p.data_size[0]}
    try:
        with torch.device("meta"):
            return create_model(cfg.name, **options)
    except (InvalidValueError, TypeError, ValueError):
        return None


def int8_pieces(engines: list[str], batch: int, bound: int | None = None) -> str:
    """One line when an int8 program (``bound``: its largest batch, by default that of
    the programs ``quantize`` makes) is timed on a larger batch: it runs it in pieces."""
    from resnetlab.infer.quantize import MAX_BATCH

    bound = MAX_BATCH if bound is None else bound
    if batch <= bound or not any(e.startswith("int8") for e in engines):
        return ""
    pieces = -(-batch // bound)
    return (
        f"the int8 program takes batches of at most {bound:,}: it runs the batch of "
        f"{batch:,} in {pieces} pieces"
    )


def check_program_batch(p: Predictor, size: tuple[int, int, int, int]) -> str:
    """``bench FILE.pt2`` on a batch of ``size``: refused in one line if it does not fit in
    memory (estimated on the fp32 network the program was made from), else the line saying
    it runs in pieces above the program's largest batch ("" when it does not)."""
    model = memory_model(p)
    if model is not None:
        check_memory(model, size, training=False)
    return int8_pieces(["int8"], size[0], getattr(p.model, "max_batch", None))
