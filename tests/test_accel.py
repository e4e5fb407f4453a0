"""The CPU engine against the brevitas/torch reference, bit for bit; the model file's guards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch reference needs the train extra")

from accel import CLASSES, ModelFileError, load_model, make_classifier, save_model  # noqa: E402
from accel.cpu import CpuClassifier  # noqa: E402
from accel.model_file import MODELS_DIR  # noqa: E402
from accel.nets import BinaryCoP, crops_to_tensor  # noqa: E402
from lab.batchnorm_fold import fold  # noqa: E402

torch.set_num_threads(1)


def _random_network(arch: str, seed: int) -> BinaryCoP:
    torch.manual_seed(seed)
    network = BinaryCoP(arch, len(CLASSES))
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-6, 6)
            module.running_var.uniform_(0.2, 30)
            module.weight.data.uniform_(-1, 1)  # negative scales exercise the flipped thresholds
            module.bias.data.uniform_(-1, 1)
    return network.eval()


def _reference_scores(network: BinaryCoP, crops: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network(crops_to_tensor(crops)).numpy()


@pytest.mark.parametrize("arch", ["n-cnv", "u-cnv", "cnv"])
def test_engine_equals_torch_on_random_networks(arch):
    network = _random_network(arch, seed=len(arch))
    crops = np.random.default_rng(1).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    engine = CpuClassifier(fold(network, CLASSES))
    reference = _reference_scores(network, crops)
    np.testing.assert_array_equal(engine.scores(crops), reference)
    np.testing.assert_array_equal(engine.classify(crops), reference.argmax(1))


SHIPPED = ["cnv", "n-cnv", "u-cnv"]


def test_every_network_is_shipped():
    from accel.model_file import shipped_models

    assert shipped_models() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_equals_torch_reference_on_random_crops(name):
    crops = np.random.default_rng(2).integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)
    cpu, reference = make_classifier("cpu", name), make_classifier("torch", name)
    np.testing.assert_array_equal(cpu.scores(crops), reference.scores(crops))


@pytest.fixture(scope="module")
def real_crops(shared_data):
    """120 MaskedFace-Net crops of each position, detected and cut as training and serving cut them."""
    from lab.dataset import CropMaker, CropSet, load_source

    maker = CropMaker()
    folders = ("correct", "nose", "nose_mouth", "chin")
    return CropSet.concat([load_source(str(shared_data / "maskedface" / f), maker, limit=120) for f in folders]).crops


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_equals_torch_reference_on_real_crops(real_crops, name):
    real = real_crops
    cpu, reference = make_classifier("cpu", name), make_classifier("torch", name)
    np.testing.assert_array_equal(cpu.scores(real), reference.scores(real))
    assert len(np.unique(cpu.classify(real))) >= 4  # it learned something: not all one class


def test_model_file_round_trip(tmp_path):
    model = fold(_random_network("u-cnv", 3), CLASSES, {"name": "test"})
    path = save_model(model, tmp_path / "m.npz")
    loaded = load_model(path)
    assert loaded.classes == CLASSES and loaded.arch.name == "u-cnv" and loaded.name == "test"
    crops = np.random.default_rng(3).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(CpuClassifier(loaded).scores(crops), CpuClassifier(model).scores(crops))


def test_truncated_model_file_refused(tmp_path):
    path = tmp_path / "cut.npz"
    data = (MODELS_DIR / "n-cnv.npz").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_model(path)


def test_edited_model_file_refused(tmp_path):
    model = load_model("n-cnv")
    model.conv_thresholds[2] = model.conv_thresholds[2] + 1
    path = tmp_path / "edited.npz"
    save_model(model, path)
    raw = dict(np.load(path))
    raw["conv2_thresholds"] = raw["conv2_thresholds"] - 1  # edit after the checksum was written
    np.savez(path, **raw)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(path)


def _rewrite_meta(path, edit) -> None:
    """Edit a saved model file's JSON header in place, leaving its checksum as it was."""
    raw = dict(np.load(path))
    meta = json.loads(raw["meta"].tobytes().decode())
    edit(meta)
    raw["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **raw)


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta: meta["classes"].reverse(),  # correct and no_mask swapped: compliance read upside down
        lambda meta: meta.update(framing={"margin": 0.2, "drop": 0.3}),  # crops cut otherwise than trained
        lambda meta: meta.update(arch="cnv"),
    ],
)
def test_a_header_field_that_decides_what_a_score_means_is_inside_the_checksum(tmp_path, edit):
    path = tmp_path / "swapped.npz"
    shutil.copy(MODELS_DIR / "n-cnv.npz", path)
    _rewrite_meta(path, edit)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(path)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (("correct", "nose", "nose_mouth", "chin", "hat"), "unknown class 'hat'"),
        (("correct", "nose", "nose", "chin", "no_mask"), "a class named twice"),
    ],
)
def test_unknown_or_repeated_class_names_are_refused(tmp_path, classes, message):
    model = fold(_random_network("u-cnv", 5), classes)
    path = save_model(model, tmp_path / "odd.npz")  # a consistent checksum: the names themselves are wrong
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_format_1_file_is_refused_by_version(tmp_path):
    path = tmp_path / "old.npz"
    shutil.copy(MODELS_DIR / "n-cnv.npz", path)
    _rewrite_meta(path, lambda meta: meta.update(version=1))
    with pytest.raises(ModelFileError, match="version 1; expected 'binarycop-bnn' version 2"):
        load_model(path)


def test_model_not_matching_its_architecture_refused(tmp_path):
    model = fold(_random_network("n-cnv", 4), CLASSES)
    model.arch = fold(_random_network("u-cnv", 4), CLASSES).arch  # declares u-cnv, holds n-cnv layers
    path = save_model(model, tmp_path / "wrong.npz")
    with pytest.raises(ModelFileError, match="architecture 'u-cnv'"):
        load_model(path)


def test_missing_model_named():
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model("no-such-model")


def test_crops_of_wrong_shape_refused():
    with pytest.raises(ValueError, match=r"uint8 \(N, 32, 32, 3\)"):
        make_classifier("cpu", "n-cnv").classify(np.zeros((2, 28, 28, 3), np.uint8))


def test_torch_backend_refuses_checkpoint_of_another_network(tmp_path):
    shutil.copy(MODELS_DIR / "n-cnv.npz", tmp_path / "m.npz")
    torch.save(_random_network("u-cnv", 5).state_dict(), tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="does not match architecture"):
        make_classifier("torch", str(tmp_path / "m.npz"))


def test_float_twin_computes_the_engine_function():
    """The onnxruntime benchmark's exact twin (Sign activations) equals the engine on every crop."""
    from binarycop.bench.classifier import _twin_input, float_twin

    model = load_model("n-cnv")
    crops = np.random.default_rng(6).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        twin = float_twin(model, exact=True)(torch.from_numpy(_twin_input(crops))).numpy()
    np.testing.assert_array_equal(twin.astype(np.int64), CpuClassifier(model).scores(crops))


@pytest.mark.parametrize("batch", [1, 15, 16, 33])
def test_engine_serial_and_parallel_paths_agree(batch):
    crops = np.random.default_rng(batch).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    engine = CpuClassifier(load_model("n-cnv"))
    whole = engine.scores(crops)
    one_by_one = np.concatenate([engine.scores(crops[i : i + 1]) for i in range(batch)])
    np.testing.assert_array_equal(whole, one_by_one)


def test_engine_equals_qonnx_execution_of_the_exported_model(tmp_path):
    """The exported QONNX model (scores head, raw uint8 pixels in), run by qonnx's own executor,
    gives the engine's exact scores on real face crops (from the bundled clip) and random ones."""
    pytest.importorskip("qonnx", reason="the QONNX check needs the train extra")
    from binarycop.bench.classifier import calibration_crops
    from lab.qonnx_export import export_qonnx, run_qonnx

    path = export_qonnx("n-cnv", tmp_path / "n-cnv.onnx", batch=500, head="scores")
    real = calibration_crops(limit=400)
    random = np.random.default_rng(7).integers(0, 256, (2000 - len(real), 32, 32, 3), dtype=np.uint8)
    crops = np.concatenate([real, random])
    np.testing.assert_array_equal(run_qonnx(path, crops), CpuClassifier(load_model("n-cnv")).scores(crops))


def test_portable_build_without_wide_instructions_is_bit_exact(tmp_path):
    """The engine compiled for a generic x86-64 CPU (no AVX-512, no popcnt instruction) gives the
    same scores: the SWAR popcount is the portable path."""
    import subprocess
    import sys

    script = (
        "import numpy as np; from accel.cpu import CpuClassifier; "
        "x = np.random.default_rng(8).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8); "
        "np.save(__import__('sys').argv[1], CpuClassifier('n-cnv').scores(x))"
    )
    env = {**__import__("os").environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "generic.npy")], check=True, env=env)
    crops = np.random.default_rng(8).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.load(tmp_path / "generic.npy"), make_classifier("torch", "n-cnv").scores(crops))


def test_the_onnx_twin_computes_its_torch_network(real_crops):
    """The shipped FP32 twin as the onnx backend runs it: the torch FloatCoP's logits on real and random crops."""
    from accel.nets import FloatCoP

    classifier = make_classifier("onnx", "n-cnv-fp32")
    assert classifier.classes == CLASSES and classifier.framing == load_model("n-cnv").framing
    twin = FloatCoP("n-cnv", len(CLASSES))
    twin.load_state_dict(torch.load(MODELS_DIR / "n-cnv-fp32.pt", weights_only=True))
    random = np.random.default_rng(5).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    crops = np.concatenate([real_crops[:256], random])
    with torch.no_grad():
        expected = twin.eval()(crops_to_tensor(crops)).numpy()
    np.testing.assert_allclose(classifier.scores(crops), expected, atol=1e-4)
    np.testing.assert_array_equal(classifier.classify(crops), expected.argmax(1))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data.replace(b'"correct", "nose"', b'"nose", "correct"'), "checksum mismatch"),
        (lambda data: data[: len(data) // 2], "not a readable ONNX model"),
        (lambda data: (MODELS_DIR / "detector" / "yunet_s_640_640.onnx").read_bytes(), "no 'binarycop' metadata"),
    ],
)
def test_an_onnx_twin_that_is_damaged_swapped_or_foreign_is_refused(tmp_path, damage, message):
    path = tmp_path / "twin.onnx"
    path.write_bytes(damage((MODELS_DIR / "n-cnv-fp32.onnx").read_bytes()))
    with pytest.raises(ModelFileError, match=message):
        make_classifier("onnx", str(path))
