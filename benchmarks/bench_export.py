"""Per-face latency of the exported PFPLD forms at batch 1, one thread: PyTorch eager (baseline), ONNX
Runtime fp32, ONNX Runtime int8 (QDQ, as the int8 simulation builds it) and OpenCV dnn on the Caffe model.

    python benchmarks/bench_export.py [--runs 200] [--checkpoint CKPT]

Random weights unless a checkpoint is given (timings do not depend on the values). Prints milliseconds per
face (median of the runs) and the speed-up over PyTorch measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, runs: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--checkpoint", type=Path, default=None)
    args = ap.parse_args()

    import cv2
    import onnxruntime as ort
    import torch

    from pfpld_train.export.caffe.export import export_caffe
    from pfpld_train.export.nnie.quant import quantize_model
    from pfpld_train.export.onnx.export import export_onnx, load_checkpoint
    from pfpld_train.models.pfpld import build_model

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else build_model().eval()
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 112, 112), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp / "m.onnx")
        export_caffe(tmp / "m.onnx", tmp, "m")
        quantize_model(tmp / "m.onnx", rng.random((8, 3, 112, 112), dtype=np.float32), tmp / "q.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        fp32 = ort.InferenceSession(str(tmp / "m.onnx"), so, providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(str(tmp / "q.onnx"), so, providers=["CPUExecutionProvider"])
        net = cv2.dnn.readNetFromCaffe(str(tmp / "m.prototxt"), str(tmp / "m.caffemodel"))
        xt = torch.from_numpy(x)

        def run_torch():
            with torch.no_grad():
                model(xt)

        def run_caffe():
            net.setInput(x)
            net.forward(["pose", "landmarks"])

        results = {
            "pytorch eager (baseline)": _median_ms(run_torch, args.runs),
            "onnxruntime fp32": _median_ms(lambda: fp32.run(None, {"input": x}), args.runs),
            "onnxruntime int8 (QDQ)": _median_ms(lambda: int8.run(None, {"input": x}), args.runs),
            "opencv dnn, caffe model": _median_ms(run_caffe, args.runs),
        }
    base = results["pytorch eager (baseline)"]
    print(f"PFPLD, batch 1, 1 thread, median of {args.runs} runs")
    for name, ms in results.items():
        print(f"  {name:<26} {ms:7.2f} ms/face   x{base / ms:4.2f} vs PyTorch")


if __name__ == "__main__":
    main()
