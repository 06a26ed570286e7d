"""Exported ONNX models, read and run without torch: `OnnxModel` runs one on onnxruntime, and reading one never
imports torch (the live app starts faster) and never unpickles anything. `mimic.models.onnx_export` writes them.

The graph is the checkpoint's whole inference path, `mimic.models.inference` traced as it is: float32 faces
``input`` (N, C, H, W, preprocessed as the spec says) -> calibrated class probabilities ``probabilities``
(N, classes), flip TTA and temperature inside. So a deployer (a phone, a browser, OpenCV's DNN module) needs nothing
but the preprocessing, and mimic keeps one inference path instead of a numpy copy of it. The file's
``metadata_props`` say the rest, each value JSON text:

    mimic_model    format of this metadata: 1
    class_names    the outputs' class names in index order
    preprocess     `PreprocessSpec.to_dict()`: size, channels, mean/std, framing
    temperature    the calibration temperature the graph applies (1.0: uncalibrated)
    tta_flip       whether the graph averages each face with its mirror image
    channels_last  the checkpoint's memory-format setting (informational: ONNX has no memory formats)
    net            the net's builder config (informational: an ONNX file is never rebuilt as a torch net)
    mimic_version  the mimic that trained the checkpoint; exported_with: the mimic that exported it
    about          where the weights came from (the checkpoint's card; optional)
    quantization   only in int8 models (`mimic.models.quantize`): what was quantised, how it was calibrated

The metadata goes through the same checks as a checkpoint's hyper-parameters (`ModelCard.check`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from mimic.errors import UserError, said
from mimic.models.card import CheckpointError, ModelCard, check_finite, plain
from mimic.version import __version__

FORMAT = 1
INPUT, OUTPUT = "input", "probabilities"
FIELDS = ("class_names", "preprocess", "temperature", "tta_flip", "channels_last", "net", "mimic_version")
OPTIONAL = ("about", "quantization")
EXPORT_ADVICE = "Export one from a mimic checkpoint: python scripts/export.py ckpt=<file.ckpt>"


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(str(path)).suffix.lower() == ".onnx"


def metadata(card: ModelCard) -> dict[str, str]:
    """The ``metadata_props`` of an exported ``card`` (its temperature and tta_flip: what the graph does)."""
    fields = {
        "mimic_model": FORMAT,
        "class_names": card.class_names,
        "preprocess": card.preprocess.to_dict(),
        "temperature": card.temperature,
        "tta_flip": card.tta_flip,
        "channels_last": card.channels_last,
        "net": card.net,
        "mimic_version": card.mimic_version,
        "exported_with": __version__,
        "about": card.about,
    }
    return {k: json.dumps(v) for k, v in fields.items()}


def field(meta: Mapping[str, str], key: str, path: str | os.PathLike) -> Any:
    """The value of the JSON text ``meta[key]``; `CheckpointError` naming the file and key when it is missing or not
    JSON, or when it holds anything but plain data (`mimic.models.card.plain`; the net's ``_target_``, which names
    the builder the model was made with, is the one Hydra key allowed, and only as plain text)."""
    where = f"{path}: metadata"
    if key not in meta:
        raise CheckpointError(f"{where} lacks {key}: the file is damaged or not mimic's. {EXPORT_ADVICE}.")
    try:
        value = json.loads(meta[key])
    except (json.JSONDecodeError, TypeError, RecursionError) as e:
        shown = meta[key] if len(meta[key]) <= 80 else f"{meta[key][:80]}..."
        raise CheckpointError(f"{where}.{key} is not JSON text ({said(e)}): {shown!r}. {EXPORT_ADVICE}.") from None
    if key == "net" and isinstance(value, dict) and isinstance(value.get("_target_"), str):
        rest = plain({k: v for k, v in value.items() if k != "_target_"}, f"{where}.net")
        return {"_target_": plain(value["_target_"], f"{where}.net._target_"), **rest}
    return plain(value, f"{where}.{key}")


def card_of(meta: Mapping[str, str], path: str | os.PathLike) -> ModelCard:
    """The checked card of an ONNX file's ``metadata_props``; `CheckpointError` naming the file and field."""
    where = f"{path}: metadata"
    if "mimic_model" not in meta:
        raise CheckpointError(
            f"{path} is an ONNX model without mimic's metadata (mimic_model, class_names, preprocess, ...): nothing "
            f"says which class each output is or how to prepare a face for it. {EXPORT_ADVICE}."
        )
    values = {key: field(meta, key, path) for key in ("mimic_model", *FIELDS, *(k for k in OPTIONAL if k in meta))}
    if values["mimic_model"] != FORMAT:
        raise CheckpointError(
            f"{where}.mimic_model is {values['mimic_model']!r}; this mimic reads format {FORMAT}. Export the "
            f"checkpoint again with this mimic."
        )
    net = values["net"]
    if not isinstance(net, dict) or not isinstance(net.get("_target_"), str):
        raise CheckpointError(f"{where}.net must be a mapping with a _target_ naming the net's builder, got {net!r}")
    fields = {k: values[k] for k in ("class_names", "preprocess", "tta_flip", "channels_last", "mimic_version")}
    fields.update({k: values[k] for k in ("about",) if k in values})
    return ModelCard.check(net, fields, values["temperature"], where, f"{where}.temperature")


def finite_initializers(path: Path) -> None:
    """A `CheckpointError` naming the tensor when a float initializer (a weight) of the ONNX file ``path`` holds NaN
    or infinite numbers."""
    model = onnx.load(str(path), load_external_data=False)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    for tensor in model.graph.initializer:
        if tensor.data_type in floats:
            values = numpy_helper.to_array(tensor)
            if not np.issubdtype(values.dtype, np.floating):  # bfloat16 (ml_dtypes): no numpy float kind
                values = values.astype(np.float32)
            check_finite(values, f"{path}: initializer {tensor.name}")


class OnnxModel:
    """An exported mimic model on onnxruntime's CPU provider: float32 faces (N, C, H, W) -> probabilities (N, K).

    ``threads``: onnxruntime intra-op threads (None: onnxruntime's default, one per core)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CheckpointError(f"model file not found: {self.path}. {EXPORT_ADVICE}.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: mimic reports what goes wrong itself
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph kinds on junk
            raise CheckpointError(
                f"{self.path} is not an ONNX model onnxruntime opens ({said(e)}). {EXPORT_ADVICE}."
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.card = card_of(meta, self.path)
        self.quantization: dict | None = field(meta, "quantization", self.path) if "quantization" in meta else None
        self._check_graph()
        finite_initializers(self.path)

    def _check_graph(self) -> None:
        """The graph takes ``input`` of the spec's shape and gives ``probabilities`` for the card's classes."""
        spec, k = self.card.preprocess, len(self.card.class_names)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shapes = {i.name: i.shape for i in inputs}, {o.name: o.shape for o in outputs}
        ok = (
            list(shapes[0]) == [INPUT]
            and OUTPUT in shapes[1]
            and list(shapes[0][INPUT][1:]) == [spec.channels, spec.size, spec.size]
            and list(shapes[1][OUTPUT][1:]) == [k]
        )
        if not ok:
            raise CheckpointError(
                f"{self.path}: the graph's inputs {shapes[0]} and outputs {shapes[1]} do not fit its metadata "
                f"({INPUT}: [N, {spec.channels}, {spec.size}, {spec.size}], {OUTPUT}: [N, {k}]). {EXPORT_ADVICE}."
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: x})[0]


def check_baked_settings(
    card: ModelCard, path: str | os.PathLike, tta_flip: bool | None, calibrated: bool = True, prefix: str = ""
) -> None:
    """Refuse to override what an ONNX file's graph does inside (flip TTA, temperature): a `UserError` naming the
    setting ``<prefix>tta_flip`` / ``<prefix>calibrated`` and the export that does what was asked."""
    if tta_flip is not None and tta_flip != card.tta_flip:
        flag = str(tta_flip).lower()
        raise UserError(
            f"{prefix}tta_flip={flag}: {path} does {'' if card.tta_flip else 'no '}flip TTA inside its graph. Leave "
            f"{prefix}tta_flip unset, or export the checkpoint again with "
            f"`python scripts/export.py ckpt=<file.ckpt> tta_flip={flag}`."
        )
    if not calibrated and card.temperature != 1.0:
        raise UserError(
            f"{prefix}calibrated=false: {path} applies its calibration temperature ({card.temperature:.4g}) inside "
            f"its graph. Export the checkpoint with `python scripts/export.py ckpt=<file.ckpt> calibrated=false`."
        )


def read_onnx_card(path: str | os.PathLike) -> ModelCard:
    """The checked card of an exported ONNX file (opened by onnxruntime, so the graph is checked too)."""
    return OnnxModel(path, threads=1).card
