"""The fixed onnx runner, executed inside the native sandbox (its hash is in the measurement).

stdin: an .npz archive of named input tensors; stdout: an .npz archive of the outputs, named
as the model names them. argv[1]: the model path; argv[2]: intra-op threads. Runs standalone
(no imports from the daemon): the sandbox sees only the Python runtime and this file.
"""

import io
import sys


def main() -> int:
    import numpy as np
    import onnxruntime as ort

    ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(sys.argv[2])
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    with np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False) as archive:
        feeds = {name: archive[name] for name in archive.files}
    names = [output.name for output in session.get_outputs()]
    results = session.run(names, feeds)
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, results, strict=True)))
    sys.stdout.buffer.write(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
