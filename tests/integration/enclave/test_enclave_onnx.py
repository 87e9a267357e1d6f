"""onnx workloads: a model built here with onnx's helper API runs in the native sandbox and
returns what numpy computes; the runner has no network."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from node.enclave.jobs import JobLimits
from node.enclave.workloads import OnnxWorkload


def _model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
        ],
        "dense_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten()),
            helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(7)
    return rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)


def test_model_returns_the_expected_outputs(backend, client, weights):
    w, b = weights
    workload = OnnxWorkload(_model(w, b))
    instance = backend.create_instance(workload)
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    feeds = io.BytesIO()
    np.savez(feeds, x=x)

    ran = client.run(instance, feeds.getvalue(), limits=JobLimits(wall_seconds=30))

    assert ran.outcome.succeeded, ran.outcome.failure
    with np.load(io.BytesIO(ran.plaintext_output), allow_pickle=False) as outputs:
        np.testing.assert_allclose(outputs["y"], np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)


def test_measurement_is_model_and_runner(weights):
    w, b = weights
    first = OnnxWorkload(_model(w, b)).measure()
    assert first == OnnxWorkload(_model(w, b)).measure()
    assert first != OnnxWorkload(_model(w, b + 1)).measure()


def test_malformed_tensors_fail_the_job(backend, client, weights):
    instance = backend.create_instance(OnnxWorkload(_model(*weights)))
    ran = client.run(instance, b"not an npz archive", limits=JobLimits(wall_seconds=30))
    assert ran.outcome.failure is not None
    assert ran.outcome.receipt is None
