"""Writing a checkpoint as a self-describing ONNX file (`export`; `mimic.models.onnx_model` says what the file holds
and reads it without torch), and the cached export that lets the live app run a checkpoint on onnxruntime
(`export_cached`). int8 quantisation of an exported file is `mimic.models.quantize`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import onnx
import torch

from mimic.io import atomic_write, cache_dir, sha256_file
from mimic.models import inference
from mimic.models.card import CheckpointError, ModelCard
from mimic.models.checkpoint import load_net
from mimic.models.onnx_model import INPUT, OUTPUT, metadata
from mimic.version import __version__

log = logging.getLogger(__name__)


def export(
    ckpt: str | os.PathLike, out: str | os.PathLike, tta_flip: bool | None = None, calibrated: bool = True
) -> ModelCard:
    """Write the checkpoint ``ckpt`` as an ONNX file at ``out`` (replaced whole: the caller picks a free name); its
    card, with the flip TTA (None: the checkpoint's) and temperature (``calibrated=False``: 1.0) the graph applies."""
    net, card = load_net(ckpt)
    card = dataclasses.replace(
        card,
        tta_flip=card.tta_flip if tta_flip is None else bool(tta_flip),
        temperature=card.temperature if calibrated else 1.0,
    )

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # the graph input's name
            x = inference.logits(self.net, input, card.tta_flip, card.channels_last)
            return inference.probabilities(x, card.temperature)

    spec = card.preprocess
    example = torch.zeros(2, spec.channels, spec.size, spec.size)
    # torch.onnx warns that torchvision's ops are not installed; onnxscript and onnx_ir log ~30 INFO lines of their
    # passes, which would bury a server's address: quiet unless asked (hydra.verbose=true or =[onnxscript,onnx_ir])
    quiet = {"torch.onnx": logging.ERROR, "onnxscript": logging.WARNING, "onnx_ir": logging.WARNING}
    loggers = {logging.getLogger(name): level for name, level in quiet.items()}
    levels = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        if logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations: nothing a user can do
            program = torch.onnx.export(
                Probabilities().eval(),
                (example,),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamo=True,
                dynamic_shapes={"input": {0: torch.export.Dim("batch")}},
                external_data=False,
                verbose=False,
            )
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
    model = program.model_proto
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch.dim_param:  # the exporter falls back to the example's batch size when the net's code pins it
        raise RuntimeError(f"the ONNX export of {ckpt} has a fixed batch size ({batch.dim_value}), not a dynamic one")
    onnx.helper.set_model_props(model, metadata(card))
    atomic_write(out, lambda tmp: onnx.save(model, str(tmp)))
    return card


def export_cached(ckpt: str | os.PathLike, tta_flip: bool | None, calibrated: bool) -> Path:
    """The ONNX export of the checkpoint ``ckpt`` in mimic's cache folder, keyed by the checkpoint's sha256, the
    settings baked into the graph and mimic's version: exported on first use, again whenever the checkpoint
    changes."""
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass the .ckpt file a training run printed.")
    tta = {None: "card", True: "flip", False: "noflip"}[tta_flip]
    key = f"{sha256_file(path)[:32]}-{tta}-{'cal' if calibrated else 'raw'}-v{__version__}"
    cached = cache_dir("onnx") / f"{key}.onnx"
    if not cached.is_file():
        log.info("exporting %s to %s for onnxruntime (once per checkpoint)", path, cached)
        export(path, cached, tta_flip, calibrated)
    return cached
