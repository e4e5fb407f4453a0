"""``binarycop bench classifier``: the CPU engine beside onnxruntime and torch, in one process.

Every competitor runs the same network: onnxruntime gets a float twin of the folded model
(identical ±1 weights; each threshold as a bias before the activation) in fp32 and
statically quantised to int8 (calibrated on real face crops from the bundled clip); torch
runs the brevitas reference. With Sign as activation the twin computes exactly the
engine's function (checked on every run), but onnxruntime executes Sign as a separate
slow op (2.6x slower measured here); so onnxruntime is timed on the same twin with Clip
(-1, 1), which it fuses into the convolution: the anchor is never handicapped. Rounds alternate between the
engines after warm-up; figures are medians over rounds. Needs the ``train`` extra.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from accel.arch import CLASSES
from accel.model_file import BinaryModel, load_model, resolve_model_path

FPGA_PAPER_CROPS_PER_S = {"cnv": 3049.0, "n-cnv": 6460.0, "u-cnv": 1646.0}


def float_twin(model: BinaryModel, exact: bool = True):
    """A plain torch network over the folded model's weights and thresholds; with ``exact``
    (Sign activations) it computes the engine's scores exactly, else it uses Clip(-1, 1)."""
    import torch
    from torch import nn

    arch = model.arch

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList()
            for index, (cin, cout, _, _) in enumerate(arch.conv_shapes()):
                conv = nn.Conv2d(cin, cout, 3, bias=True)
                signs = _conv_signs(model, index, cin)
                conv.weight.data = torch.from_numpy(signs.transpose(0, 3, 1, 2).astype(np.float32))
                conv.bias.data = torch.from_numpy(0.5 - model.conv_thresholds[index].astype(np.float32))
                self.convs.append(conv)
            self.fcs = nn.ModuleList()
            features = arch.flat_features()
            for index, out_features in enumerate((*arch.fc_features, len(model.classes))):
                last = index == len(arch.fc_features)
                fc = nn.Linear(features, out_features, bias=not last)
                fc.weight.data = torch.from_numpy(_fc_signs(model, index, features).astype(np.float32))
                if not last:
                    fc.bias.data = torch.from_numpy(0.5 - model.fc_thresholds[index].astype(np.float32))
                self.fcs.append(fc)
                features = out_features

        def forward(self, pixels):  # float (N, 3, 32, 32) holding pixel - 128
            activation = torch.sign if exact else (lambda t: torch.clamp(t, -1.0, 1.0))
            x = pixels
            for index, conv in enumerate(self.convs):
                x = activation(conv(x))
                if index in arch.pool_after:
                    x = nn.functional.max_pool2d(x, 2)
            x = torch.flatten(x, 1)
            for fc in self.fcs[:-1]:
                x = activation(fc(x))
            return self.fcs[-1](x)

    return Twin().eval()


def _unpack(words: np.ndarray, bits: int) -> np.ndarray:
    shifts = np.arange(64, dtype=np.uint64)
    unpacked = ((words[..., None] >> shifts) & np.uint64(1)).reshape(*words.shape[:-1], -1)[..., :bits]
    return np.where(unpacked > 0, 1, -1).astype(np.int8)


def _conv_signs(model: BinaryModel, index: int, cin: int) -> np.ndarray:
    """(Cout, ky, kx, Cin) in {-1, +1}, flips applied, as the engine uses them."""
    weights = model.conv_weights[index]
    if index == 0:
        return weights.reshape(len(weights), 3, 3, cin)
    return _unpack(weights, cin)


def _fc_signs(model: BinaryModel, index: int, features: int) -> np.ndarray:
    weights = model.fc_weights[index]
    if index:
        return _unpack(weights, features)
    channels = model.arch.conv_channels[-1]
    side = int(round((features // channels) ** 0.5))
    words = weights.shape[1] // (side * side)
    signs = _unpack(weights.reshape(len(weights), side, side, words), channels)  # (Cout, y, x, C)
    return signs.transpose(0, 3, 1, 2).reshape(len(weights), -1)  # torch flattens (C, y, x)


def _twin_input(crops: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) - 128.0


def _export(network, path: Path) -> Path:
    import torch

    torch.onnx.export(
        network,
        torch.zeros(1, 3, 32, 32),
        str(path),
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    return path


def export_twin(model: BinaryModel, folder: Path, calibration: np.ndarray) -> tuple[Path, Path, Path]:
    """(exact fp32 twin, fast fp32 twin, fast int8 twin) as ONNX files."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    exact = _export(float_twin(model, exact=True), folder / "twin_exact.onnx")
    fp32 = _export(float_twin(model, exact=False), folder / "twin_fp32.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [{"pixels": _twin_input(calibration[i : i + 64])} for i in range(0, len(calibration), 64)]
            )

        def get_next(self):
            return next(self.batches, None)

    int8 = folder / "twin_int8.onnx"
    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return exact, fp32, int8


def calibration_crops(limit: int = 512) -> np.ndarray:
    """Real face crops: every face the detector finds in the bundled clip."""
    import cv2

    from binarycop.config import DetectorConfig
    from binarycop.democlip import CLIP
    from detector import make_detector

    detector = make_detector(DetectorConfig())
    capture = cv2.VideoCapture(str(CLIP))
    crops = []
    while sum(len(c) for c in crops) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        crops.append(detector.detect(frame).crops)
    detector.close()
    return np.concatenate(crops)[:limit]


def _network_for(arch: str):
    """The shipped model and its brevitas reference, or a seeded random one where none ships."""
    import torch

    from accel.nets import BinaryCoP
    from lab.batchnorm_fold import fold

    path = resolve_model_path(arch)
    if path.is_file() and path.with_suffix(".pt").is_file():
        model = load_model(path)
        network = BinaryCoP(model.arch, len(model.classes))
        network.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
        return model, network.eval(), "shipped"
    torch.manual_seed(0)
    network = BinaryCoP(arch, len(CLASSES))
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_var.uniform_(1, 20)
    network.eval()
    return fold(network, CLASSES), network, "random weights (no shipped model)"


def _rate(run, crops: np.ndarray, seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while True:
        run(crops)
        count += len(crops)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def bench_classifier(arch: str = "n-cnv", batch: int = 256, rounds: int = 5, seconds: float = 0.5) -> dict:
    import onnxruntime as ort
    import torch

    from accel.cpu import CpuClassifier
    from accel.nets import crops_to_tensor

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    model, network, source = _network_for(arch)
    engine = CpuClassifier(model)
    real = calibration_crops()
    rng = np.random.default_rng(0)
    crops = np.concatenate([real, rng.integers(0, 256, (max(0, 4096 - len(real)), 32, 32, 3), dtype=np.uint8)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:
        exact_path, fp32_path, int8_path = export_twin(model, Path(folder), real)
        exact = ort.InferenceSession(str(exact_path), options, providers=["CPUExecutionProvider"])
        fp32 = ort.InferenceSession(str(fp32_path), options, providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])

    def torch_run(x):
        with torch.no_grad():
            return network(crops_to_tensor(x))

    runners = {
        "engine": engine.scores,
        "onnxruntime_fp32": lambda x: fp32.run(None, {"pixels": _twin_input(x)}),
        "onnxruntime_int8": lambda x: int8.run(None, {"pixels": _twin_input(x)}),
        "torch": torch_run,
    }
    check = crops[:512]
    twin_scores = exact.run(None, {"pixels": _twin_input(check)})[0]
    if not np.array_equal(twin_scores.astype(np.int64), engine.scores(check).astype(np.int64)):
        raise AssertionError("the onnxruntime float twin does not compute the engine's function")
    best_batch = {}
    for name, run in runners.items():  # warm-up, and each engine's best batch size
        sizes = sorted({batch, 64, 1024}) if name != "engine" else [batch]
        best_batch[name] = max(sizes, key=lambda size: _rate(run, crops[:size], seconds / 2))
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(rounds):
        for name, run in runners.items():
            rates[name].append(_rate(run, crops[: best_batch[name]], seconds))
        print(
            f"round {round_index + 1}/{rounds}: " + ", ".join(f"{n} {r[-1]:,.0f}" for n, r in rates.items()),
            file=sys.stderr,
        )
    median = {name: statistics.median(values) for name, values in rates.items()}
    single = crops[:1]
    latencies = []
    for _ in range(500):
        started = time.perf_counter()
        engine.scores(single)
        latencies.append(time.perf_counter() - started)
    onnx_best = max(median["onnxruntime_fp32"], median["onnxruntime_int8"])
    return {
        "arch": arch,
        "batch": batch,
        "engine_crops_per_s": median["engine"],
        "onnxruntime_fp32_crops_per_s": median["onnxruntime_fp32"],
        "onnxruntime_int8_crops_per_s": median["onnxruntime_int8"],
        "torch_crops_per_s": median["torch"],
        "ratio_vs_onnxruntime": median["engine"] / onnx_best,
        "batch1_latency_ms": 1000 * statistics.median(latencies),
        "fpga_paper_crops_per_s": FPGA_PAPER_CROPS_PER_S[arch],
        "engine_model_bytes": int(sum(a.nbytes for a in model.arrays().values())),
        "best_batch": best_batch,
        "threads": threads,
        "model": source,
    }


def bench_finn(
    model: str, bitfile: str, batch: int = 256, rounds: int = 5, seconds: float = 1.0, classifier=None
) -> dict:
    """crops/s of the FINN accelerator on a board beside the CPU engine in the same process, and
    whether the accelerator's classes equal the engine's on real crops (they must: same network).
    The engine and the clip's face crops are used where the board can run them (numba, mediapipe);
    else the FPGA is timed alone on random crops, and the result says so. ``classifier`` replaces
    the board's (tests only). Needs a PYNQ board and the ``fpga`` extra."""
    from accel.finn import FinnClassifier

    fpga = classifier or FinnClassifier(model, bitfile, max_batch=batch)
    real, engine = _optional_real_crops(), _optional_engine(model)
    rng = np.random.default_rng(0)
    crops = np.concatenate([real, rng.integers(0, 256, (max(0, batch - len(real)), 32, 32, 3), dtype=np.uint8)])
    runners = {"fpga": fpga.classify}
    if engine is not None:
        runners["engine"] = engine.classify
    checked = real if len(real) else crops
    agreement = float(np.mean(fpga.classify(checked) == engine.classify(checked))) if engine else None
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(rounds):
        for name, run in runners.items():
            rates[name].append(_rate(run, crops[:batch], seconds))
        print(
            f"round {round_index + 1}/{rounds}: " + ", ".join(f"{n} {r[-1]:,.0f}" for n, r in rates.items()),
            file=sys.stderr,
        )
    median = {name: statistics.median(values) for name, values in rates.items()}
    arch = fpga.arch
    return {
        "arch": arch,
        "batch": batch,
        "fpga_crops_per_s": median["fpga"],
        "engine_crops_per_s": median.get("engine"),
        "fpga_paper_crops_per_s": FPGA_PAPER_CROPS_PER_S[arch],
        "ratio_to_paper": median["fpga"] / FPGA_PAPER_CROPS_PER_S[arch],
        "classes_equal_engine": agreement,
        "checked_crops": len(checked),
        "checked_on": "real face crops from the bundled clip" if len(real) else "random crops",
    }


def _optional_real_crops() -> np.ndarray:
    try:
        return calibration_crops()
    except ImportError as error:  # no detector on this board
        print(f"no face detector here ({error}): timing on random crops", file=sys.stderr)
        return np.empty((0, 32, 32, 3), np.uint8)


def _optional_engine(model: str):
    """The same trained network on the board's CPU, where its weights ship and numba runs."""
    if not resolve_model_path(model).is_file():
        return None
    try:
        from accel.cpu import CpuClassifier
    except ImportError as error:
        print(f"no CPU engine here ({error}): the FPGA is timed alone", file=sys.stderr)
        return None
    return CpuClassifier(model)
