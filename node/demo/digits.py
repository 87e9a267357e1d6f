"""The demo's model: a classifier of 8x8 handwritten digits, trained at demo time on the data
set that ships inside scikit-learn (1,797 images, no download) and exported to ONNX.

The onnx workload's input is an .npz archive of tensors named as the model's inputs, its
output an .npz of the model's outputs (node/enclave/onnx_entry.py): here one float tensor
`X` of shape (1, 64) in, `label` (int64, (1,)) and `probabilities` (float, (1, 10)) out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.demo.errors import DemoFailed

INPUT_NAME = "X"
HELD_OUT_SHARE = 0.25
SPLIT_SEED = 0
# Opset of the exported graph: one the node's onnxruntime runs.
ONNX_OPSET = 17
_SHADES = " .:-=+*#%@"


@dataclass(frozen=True)
class TrainedModel:
    onnx: bytes
    description: str
    train_count: int
    held_out_images: np.ndarray  # (n, 64) float32, pixel values 0..16
    held_out_labels: np.ndarray  # (n,) int
    accuracy: float  # on the held-out images, which training never saw


def train() -> TrainedModel:
    """Standardise the 64 pixels, fit a multinomial logistic regression (a softmax layer) on
    three quarters of the digits, score it on the rest, export the whole pipeline."""
    try:
        from skl2onnx import to_onnx
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise DemoFailed(
            f"the demo's packages are missing ({exc.name}): `make demo` installs them, "
            "or `pip install -e '.[demo]'`"
        ) from exc
    images, labels = load_digits(return_X_y=True)
    images = images.astype(np.float32)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=HELD_OUT_SHARE, random_state=SPLIT_SEED, stratify=labels
    )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(train_x, train_y)
    accuracy = float(pipeline.score(test_x, test_y))
    # zipmap off: the probabilities stay a plain tensor, which an .npz archive can hold.
    exported = to_onnx(
        pipeline,
        train_x[:1],
        options={"zipmap": False},
        target_opset=ONNX_OPSET,
    )
    names = [tensor.name for tensor in exported.graph.input]
    if names != [INPUT_NAME]:
        raise DemoFailed(f"the exported model's inputs are {names}, expected [{INPUT_NAME!r}]")
    return TrainedModel(
        onnx=exported.SerializeToString(),
        description="standard scaler + multinomial logistic regression (scikit-learn)",
        train_count=len(train_y),
        held_out_images=test_x,
        held_out_labels=np.asarray(test_y),
        accuracy=accuracy,
    )


def input_archive(image: np.ndarray) -> bytes:
    """One 8x8 image as the onnx workload's input: `X`, shape (1, 64), float32."""
    tensors: dict[str, Any] = {INPUT_NAME: image.reshape(1, 64).astype(np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **tensors)
    return buffer.getvalue()


def pixel_bytes(archive: bytes) -> bytes:
    """The raw tensor inside an input archive: what a leak would hold even unwrapped."""
    with np.load(io.BytesIO(archive), allow_pickle=False) as tensors:
        return bytes(tensors[INPUT_NAME].tobytes())


def read_prediction(archive: bytes) -> tuple[int, float]:
    """(digit, its probability) from the model's output archive."""
    try:
        with np.load(io.BytesIO(archive), allow_pickle=False) as outputs:
            label = int(outputs["label"].reshape(-1)[0])
            probabilities = outputs["probabilities"].reshape(-1)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise DemoFailed(f"the output is not the model's label and probabilities: {exc}") from exc
    if not 0 <= label < len(probabilities):
        raise DemoFailed(f"the output's label {label} is not a digit of its probabilities")
    return label, float(probabilities[label])


def picture(image: np.ndarray) -> list[str]:
    """The 8x8 image as eight lines of text, darker characters for darker ink (0..16)."""
    rows = image.reshape(8, 8)
    top = len(_SHADES) - 1
    return ["".join(2 * _SHADES[min(top, int(value) * top // 16)] for value in row) for row in rows]
