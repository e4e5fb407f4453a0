"""Model evaluation interfaces: ``eval`` documents and pictures, ``scan`` on real images, scene scoring."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from accel import CLASSES, ModelFileError, load_model, make_classifier
from binarycop.cli import main
from detector import Framing
from lab.evaluate import confusion_report, draw_confusion
from lab.synth import POSITIONS

REAL_IMAGE = "scenes/misc/chandrikadeb7_pic1_masks.jpg"


def test_confusion_report_counts_rows_as_truth():
    truth = np.array([0, 0, 0, 1, 1, 4])
    predicted = np.array([0, 0, 3, 1, 4, 4])
    result = confusion_report(truth, predicted, list(CLASSES))
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class_recall"] == {"correct": pytest.approx(2 / 3), "nose": 0.5, "no_mask": 1.0}
    assert result["confusion"][0] == [2, 0, 0, 1, 0]
    assert result["confusion"][1] == [0, 1, 0, 0, 1]
    assert sum(map(sum, result["confusion"])) == 6


def test_confusion_picture_shades_the_diagonal():
    result = confusion_report(np.array([0, 1, 2, 3, 4]), np.array([0, 1, 2, 3, 0]), list(CLASSES))
    picture = draw_confusion(result)
    assert picture.ndim == 3 and picture.shape[2] == 3
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 10  # text and shaded cells, not a blank


def _class_folders(shared_data, tmp_path, per_class: int = 6):
    """A small class-folder set of real MaskedFace-Net images (copied to a temporary folder)."""
    for name in CLASSES[:4]:
        (tmp_path / name).mkdir(parents=True)
        for path in sorted((shared_data / "maskedface" / name).iterdir())[:per_class]:
            shutil.copy(path, tmp_path / name / path.name)
    return tmp_path


def test_eval_json_and_plot_on_class_folders(shared_data, tmp_path, capsys):
    data = _class_folders(shared_data, tmp_path / "data")
    plot = tmp_path / "confusion.png"
    assert main(["-q", "eval", "--model", "n-cnv", "--data", str(data), "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"accuracy", "per_class_recall", "confusion", "classes", "n"}
    assert result["classes"] == list(CLASSES)
    assert result["n"] == 24
    confusion = np.array(result["confusion"])
    assert confusion.shape == (5, 5) and confusion.sum() == 24
    assert confusion.sum(axis=1).tolist() == [6, 6, 6, 6, 0]
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / 24)
    assert set(result["per_class_recall"]) == set(CLASSES[:4])
    picture = cv2.imread(str(plot))
    assert picture is not None and picture.shape[0] > 200


def test_eval_of_mfn_suffixes_equals_class_folders(shared_data, tmp_path, capsys):
    data = _class_folders(shared_data, tmp_path / "folders", per_class=3)
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in data.rglob("*.jpg"):
        shutil.copy(path, flat / path.name)  # MaskedFace-Net names keep the class in their suffix
    main(["-q", "eval", "--data", str(data), "--json"])
    by_folder = json.loads(capsys.readouterr().out)
    main(["-q", "eval", "--data", str(flat), "--json"])
    by_suffix = json.loads(capsys.readouterr().out)
    assert by_folder == by_suffix


def test_unshipped_model_name_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from accel import model_file

    monkeypatch.setattr(model_file, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="'u-cnv' is not shipped"):
        load_model("u-cnv")
    assert main(["-q", "eval", "--model", "cnv", "--data", str(tmp_path)]) == 2
    assert "'cnv' is not shipped" in capsys.readouterr().err


def test_scan_reports_boxes_in_original_pixels(shared_data, tmp_path, capsys):
    image = cv2.imread(str(shared_data / REAL_IMAGE))
    height, width = image.shape[:2]
    shifted = np.full((height + 150, width + 100, 3), 127, np.uint8)
    shifted[150:, 100:] = image  # the same faces, 100 px right and 150 px down
    shifted_path = tmp_path / "shifted.png"
    cv2.imwrite(str(shifted_path), shifted)
    assert main(["-q", "scan", str(shared_data / REAL_IMAGE), str(shifted_path), "--json"]) == 0
    original, moved = json.loads(capsys.readouterr().out)
    assert original["image"].endswith(REAL_IMAGE) and moved["image"] == str(shifted_path)
    assert len(original["faces"]) >= 2
    classifier = make_classifier("cpu", "n-cnv")
    from detector import crop_faces

    for face in original["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert face["class"] in CLASSES and 0.2 <= face["score"] <= 1.0
        assert classifier.classes[classifier.classify(crop_faces(image, np.array([face["box"]])))[0]] == face["class"]
        centre = np.array([(x1 + x2) / 2 + 100, (y1 + y2) / 2 + 150])
        centres = [np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) for b in (f["box"] for f in moved["faces"])]
        assert min(np.abs(c - centre).max() for c in centres) < 0.15 * (
            x2 - x1
        )  # a box in the wrong frame is 100+ px off


def test_scan_of_unreadable_image_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["-q", "scan", str(bad)]) == 2
    assert "broken.jpg: not a readable image" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("yunet@1,x", "'yunet@1,x': scales are comma-separated numbers"),
        ("yunet@9", "scales must be factors between 0.25 and 4"),
        ("haar", "kind: must be 'yunet' or 'blazeface'"),
    ],
)
def test_scan_with_a_bad_detector_is_a_clear_error(tmp_path, capsys, spec, problem):
    image = tmp_path / "grey.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))
    assert main(["-q", "scan", "--detector", spec, str(image)]) == 2
    assert problem in capsys.readouterr().err


def test_scene_boxes_match_one_detection_each():
    from lab.scenes import match_boxes

    truth = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [0, 0, 11, 11], [300, 300, 310, 310]], np.float32)
    found = np.array([[1, 1, 10, 10], [101, 99, 121, 119], [305, 305, 330, 330]], np.float32)
    # two true boxes overlap the first detection: the closer one gets it, the other stays unmatched
    assert match_boxes(truth, found).tolist() == [0, 1, -1, -1]
    assert match_boxes(truth, found[:0]).tolist() == [-1, -1, -1, -1]


def test_group_recalls_map_positions_to_incorrect():
    from lab.scenes import group_recalls

    result = group_recalls(
        ["with_mask", "with_mask", "mask_weared_incorrect", "mask_weared_incorrect", "without_mask"],
        ["correct", "nose", "chin", "no_mask", "no_mask"],
        CLASSES,
    )
    assert result["recall"] == {"with_mask": 0.5, "mask_weared_incorrect": 0.5, "without_mask": 1.0}
    assert result["mean"] == pytest.approx(2 / 3)
    assert result["confusion"][1] == [0, 0, 0, 1, 1]
    assert result["support"] == {"with_mask": 2, "mask_weared_incorrect": 2, "without_mask": 1}
    low, high = result["recall_interval_95"]["with_mask"]
    assert low < 0.5 < high and high - low > 0.5  # one of two is barely evidence


def test_wilson_interval_matches_known_values():
    """Against published values (Newcombe 1998, Table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775)."""
    from lab.scenes import wilson_interval

    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(17, 25)[0] < 0.68 < wilson_interval(17, 25)[1]
    assert wilson_interval(0, 0) is None


def test_scene_split_is_the_training_split(shared_data):
    from lab.dataset import held_out_mask
    from lab.scenes import scene_split

    held_out = scene_split(shared_data / "scenes", "held-out")
    train = scene_split(shared_data / "scenes", "train")
    assert held_out and train and not {s.name for s in held_out} & {s.name for s in train}
    assert 0.1 < len(held_out) / (len(held_out) + len(train)) < 0.2
    groups = np.array([f"image:{s.name}" for s in held_out + train])  # the groups the VOC loader gives
    assert held_out_mask(groups).tolist() == [True] * len(held_out) + [False] * len(train)


def test_eval_scenes_counts_every_labelled_face(shared_data, tmp_path, capsys):
    from lab.scenes import scene_split

    chosen = scene_split(shared_data / "scenes", "held-out")[:4]
    for folder in ("images", "annotations"):
        (tmp_path / folder).mkdir()
    for scene in chosen:
        shutil.copy(scene.image_path, tmp_path / "images" / scene.image_path.name)
        shutil.copy(shared_data / "scenes" / "annotations" / f"{scene.name}.xml", tmp_path / "annotations")
    assert main(["-q", "eval-scenes", "--data", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 4
    assert result["faces"] == sum(len(s.boxes) for s in chosen)
    assert result["ground_truth_boxes"]["n"] == result["faces_min_px"]
    assert result["end_to_end"]["n"] <= result["faces_min_px"]
    assert 0 < result["detection"]["recall_all"] <= 1
    by_group = result["detection"]["recall_min_px_by_group"]
    assert set(by_group) == {"with_mask", "mask_weared_incorrect", "without_mask"}
    large = {g: 0 for g in by_group}
    for scene in chosen:
        sizes = np.minimum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1])
        for group, size in zip(scene.groups, sizes):
            large[group] += int(size >= 24)
    assert all((by_group[g] is None) == (large[g] == 0) for g in by_group)
    found = sum(by_group[g] * large[g] for g in by_group if large[g])  # the groups add up to the whole
    assert found == pytest.approx(result["detection"]["recall_min_px"] * result["faces_min_px"])
    confusion = np.array(result["ground_truth_boxes"]["confusion"])
    assert confusion.shape == (3, 5) and confusion.sum() == result["faces_min_px"]


def test_eval_scenes_compares_models_on_one_detection_pass(shared_data, tmp_path, capsys):
    """Several --model: each model's figures equal those of its own run, the detection is shared."""
    from lab.scenes import scene_split

    for folder in ("images", "annotations"):
        (tmp_path / folder).mkdir()
    for scene in scene_split(shared_data / "scenes", "held-out")[4:10]:
        shutil.copy(scene.image_path, tmp_path / "images" / scene.image_path.name)
        shutil.copy(shared_data / "scenes" / "annotations" / f"{scene.name}.xml", tmp_path / "annotations")
    alone = {}
    for model in ("n-cnv", "u-cnv"):
        assert main(["-q", "eval-scenes", "--data", str(tmp_path), "--model", model, "--json"]) == 0
        alone[model] = json.loads(capsys.readouterr().out)
    argv = ["-q", "eval-scenes", "--data", str(tmp_path), "--model", "n-cnv", "--model", "u-cnv", "--json"]
    assert main(argv) == 0
    both = json.loads(capsys.readouterr().out)
    assert [result["model"] for result in both["models"]] == ["n-cnv", "u-cnv"]
    for result in both["models"]:
        assert result == alone[result["model"]]
    assert alone["n-cnv"]["ground_truth_boxes"]["confusion"] != alone["u-cnv"]["ground_truth_boxes"]["confusion"]
    assert main([*argv[:-1], "--plot", str(tmp_path / "c.png")]) == 2
    assert "give one --model with it" in capsys.readouterr().err


def test_eval_scenes_scores_the_fp32_twin_beside_the_binary_network(shared_data, tmp_path, capsys):
    """``--model onnx:NAME`` runs another backend's classifier (the FP32 twin the onnx backend ships) on the same
    detection pass, held out as its sealed header says; an unknown backend is named."""
    from accel.onnx_model import read_onnx_model
    from lab.scenes import scene_split
    from lab.twin_export import export_twin_onnx

    for folder in ("images", "annotations"):
        (tmp_path / folder).mkdir()
    for scene in scene_split(shared_data / "scenes", "held-out")[4:10]:
        shutil.copy(scene.image_path, tmp_path / "images" / scene.image_path.name)
        shutil.copy(shared_data / "scenes" / "annotations" / f"{scene.name}.xml", tmp_path / "annotations")
    twin = export_twin_onnx("n-cnv", tmp_path / "twin.onnx")
    assert read_onnx_model(twin)[1]["held_out"] == load_model("n-cnv").meta["held_out"]
    argv = ["-q", "eval-scenes", "--data", str(tmp_path), "--model", "n-cnv", "--model", f"onnx:{twin}", "--json"]
    assert main(argv) == 0
    both = json.loads(capsys.readouterr().out)
    assert [result["model"] for result in both["models"]] == ["n-cnv", "n-cnv-fp32"]
    binary, fp32 = both["models"]
    assert binary["ground_truth_boxes"]["n"] == fp32["ground_truth_boxes"]["n"] > 0
    assert main(["-q", "eval-scenes", "--data", str(tmp_path), "--model", f"onnx:{twin}", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone == fp32 and alone["held_out"] == "15 %"
    assert main(["-q", "eval-scenes", "--data", str(tmp_path), "--model", "tpu:n-cnv"]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().err


def test_synth_puts_masks_at_four_positions(shared_data, tmp_path, capsys):
    from lab.dataset import _group_of, load_source

    faces = tmp_path / "faces" / "portraits"
    faces.mkdir(parents=True)
    for path in sorted((shared_data / "unmasked" / "prajnasb_without_mask").iterdir())[:3]:
        shutil.copy(path, faces / path.name)
    out = tmp_path / "out"
    templates = shared_data / "mask_templates"
    args = ["-q", "synth", "--faces", str(tmp_path / "faces"), "--out", str(out), "--templates", str(templates)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["faces"] == 3 and result["written"] == 4 * (3 - result["no_landmarks"]) > 0
    sheet = cv2.imread(result["contact_sheet"])
    assert sheet is not None and sheet.shape[1] > 5 * 96
    variants = {p: cv2.imread(str(next((out / p).glob("*.jpg")))).astype(np.int16) for p in POSITIONS}
    for first in POSITIONS:  # the same face, masked four different ways
        for second in POSITIONS:
            if first < second:
                assert np.abs(variants[first] - variants[second]).mean() > 2, (first, second)
    groups = {_group_of(path) for path in out.rglob("*.jpg")}
    assert len(groups) == result["written"] // 4  # a face's four variants share one group
    data = load_source(str(out))
    assert sorted(np.bincount(data.labels, minlength=5)[:4].tolist()) == [result["written"] // 4] * 4


def test_masks_sit_lower_for_the_looser_positions():
    from lab.synth import mask_heights

    rng = np.random.default_rng(0)
    points = np.zeros((468, 2), np.float32)
    points[:, 0] = 50
    points[168] = (50, 20)  # bridge
    points[152] = (50, 120)  # chin
    points[2] = (50, 62)  # under the nose
    points[17] = (50, 95)  # lower lip
    heights = {p: np.mean([mask_heights(points, p, rng) for _ in range(50)], axis=0) for p in POSITIONS}
    assert heights["correct"][0] < 0.3 and heights["correct"][1] > 1.0
    assert heights["nose"][0] > heights["correct"][0] + 0.2  # pulled under the nose
    assert heights["chin"][1] < heights["correct"][1] - 0.05  # chin out
    assert heights["nose_mouth"][0] > heights["nose"][0] + 0.2  # on the chin only
    with pytest.raises(ValueError, match="unknown position"):
        mask_heights(points, "forehead", rng)


def test_gradcam_maps_are_non_trivial_and_differ_by_class(shared_data):
    from lab.dataset import load_source
    from lab.gradcam import gradcam, load_network

    torch = pytest.importorskip("torch", reason="Grad-CAM runs on the torch reference (train extra)")
    torch.set_num_threads(1)
    network, classes = load_network("n-cnv")
    crops = load_source(str(shared_data / "maskedface" / "nose"), limit=4).crops
    maps, predicted = gradcam(network, crops)
    assert maps.shape == (4, 5, 5) and np.all((maps >= 0) & (maps <= 1))
    assert all(m.max() == 1.0 and m.min() < 1.0 for m in maps if m.any())  # a peak, not a flat map
    assert sum(bool(m.any()) for m in maps) >= 3
    per_class = [gradcam(network, crops, np.full(4, c))[0] for c in range(len(classes))]
    differences = [np.abs(per_class[a] - per_class[b]).mean() for a in range(5) for b in range(a + 1, 5)]
    assert min(differences) > 0.01  # every class looks at the face differently


@pytest.mark.parametrize("model, columns", [("n-cnv", 4), ("cnv", 4), ("u-cnv", 3)])
def test_gradcam_command_writes_a_sheet_per_image(shared_data, tmp_path, capsys, model, columns):
    """Columns: label, raw, BNN, and FP32 for the networks whose twin is shipped (n-CNV and CNV)."""
    image = shared_data / REAL_IMAGE
    assert main(["-q", "gradcam", "--model", model, str(image), "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "chandrikadeb7_pic1_masks_gradcam.png")]
    sheet = cv2.imread(written[0])
    assert sheet.shape[1] == columns * 128 and sheet.shape[0] >= 24 + 2 * 128  # two faces


def test_incorrect_label_rewards_any_wrong_position():
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from lab.dataset import INCORRECT
    from lab.train import loss_of

    scores = torch.tensor([[0.0, 8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0, 0.0], [8.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.full((3,), INCORRECT)
    per_face = [loss_of(scores[i : i + 1], targets[i : i + 1], temperature=1.0).item() for i in range(3)]
    probabilities = torch.softmax(scores, 1)[:, 1:4].sum(1)
    np.testing.assert_allclose(per_face, (-torch.log(probabilities)).numpy(), rtol=1e-4, atol=1e-6)
    assert per_face[0] == pytest.approx(per_face[1]) and per_face[2] > 5 * per_face[0]  # nose or chin: both right
    plain = loss_of(scores, torch.tensor([1, 3, 0]), temperature=1.0).item()
    assert plain == pytest.approx(torch.nn.functional.cross_entropy(scores, torch.tensor([1, 3, 0])).item(), abs=1e-6)


def test_group_balance_gives_each_mask_group_a_third():
    from lab.train import balanced_indices

    labels = np.array([0] * 50 + [1] * 10 + [2] * 5 + [3] * 5 + [4] * 200 + [5] * 8)
    drawn = labels[balanced_indices(labels, 30000, np.random.default_rng(0), balance="groups")]
    shares = np.bincount(drawn, minlength=6) / len(drawn)
    np.testing.assert_allclose([shares[0], shares[4], shares[[1, 2, 3, 5]].sum()], [1 / 3] * 3, atol=0.015)
    drawn = labels[balanced_indices(labels, 30000, np.random.default_rng(0), balance="labels")]
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [1 / 6] * 6, atol=0.015)


def test_training_resumes_and_folds_a_bit_exact_model(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from accel.cpu import CpuClassifier
    from accel.nets import BinaryCoP
    from lab.dataset import INCORRECT, CropSet, save_crops
    from lab.train import TrainOptions, train

    rng = np.random.default_rng(0)
    labels = np.arange(300) % (INCORRECT + 1)
    crops = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    crops[..., 0] = (labels * 40)[:, None, None]  # something learnable
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(crops, labels, np.array([f"file:x/{i}" for i in range(300)])), ["unused"])
    out = tmp_path / "m.npz"
    options = TrainOptions(arch="u-cnv", epochs=1, batch_size=32)
    train(["unused"], out, options, cache=cache)
    assert torch.load(out.with_suffix(".ckpt"), weights_only=False)["epoch"] == 0
    options.epochs = 2
    _, meta = train(["unused"], out, options, resume=True, cache=cache)
    assert torch.load(out.with_suffix(".ckpt"), weights_only=False)["epoch"] == 1 and meta["epochs"] == 2
    network = BinaryCoP("u-cnv", len(CLASSES))
    network.load_state_dict(torch.load(out.with_suffix(".pt"), weights_only=True))
    network.eval()
    from accel.nets import crops_to_tensor

    with torch.no_grad():
        reference = network(crops_to_tensor(crops[:50])).numpy()
    np.testing.assert_array_equal(CpuClassifier(load_model(out)).scores(crops[:50]), reference)


@pytest.mark.parametrize(
    "device, problem",
    [("gpu", "--device 'gpu': Expected one of cpu, cuda"), ("mps", "--device 'mps': expected cpu, cuda or cuda:N")],
)
def test_train_refuses_a_device_it_cannot_use(tmp_path, capsys, device, problem):
    pytest.importorskip("torch", reason="training needs the train extra")
    assert main(["-q", "train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz"), "--device", device]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_train_on_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, wherever this runs
    assert main(["-q", "train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU here; use --device cpu" in capsys.readouterr().err


def test_training_on_a_gpu_folds_a_bit_exact_model(tmp_path):
    """Trained on the GPU, folded on the CPU: the engine reproduces the CPU torch reference exactly.
    Needs a CUDA GPU (skipped without one; run on one before shipping a GPU-trained model)."""
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from accel.cpu import CpuClassifier
    from accel.nets import BinaryCoP, FloatCoP, crops_to_tensor
    from lab.dataset import CropSet, save_crops
    from lab.train import TrainOptions, train

    rng = np.random.default_rng(2)
    labels = np.arange(256) % len(CLASSES)
    crops = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    crops[..., 0] = (labels * 50)[:, None, None]
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(crops, labels, np.array([f"file:x/{i}" for i in range(256)])), ["unused"])
    torch.save(FloatCoP("u-cnv", len(CLASSES)).state_dict(), tmp_path / "twin.pt")
    out = tmp_path / "m.npz"
    options = TrainOptions(arch="u-cnv", epochs=1, batch_size=32, device="cuda", teacher=tmp_path / "twin.pt")
    train(["unused"], out, options, cache=cache)
    options.epochs = 2
    train(["unused"], out, options, resume=True, cache=cache)  # a GPU checkpoint resumes
    network = BinaryCoP("u-cnv", len(CLASSES))
    network.load_state_dict(torch.load(out.with_suffix(".pt"), weights_only=True))  # saved from the CPU
    network.eval()
    with torch.no_grad():
        reference = network(crops_to_tensor(crops[:64])).numpy()
    np.testing.assert_array_equal(CpuClassifier(load_model(out)).scores(crops[:64]), reference)


def test_distillation_pulls_towards_the_teacher_and_finds_its_architecture(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from accel.nets import FloatCoP
    from lab.train import distillation_loss, load_teacher

    teacher_logits = torch.tensor([[4.0, 0.0, 0.0, 0.0, 1.0]])
    agree = distillation_loss(teacher_logits.clone(), teacher_logits).item()
    disagree = distillation_loss(torch.tensor([[0.0, 0.0, 0.0, 0.0, 4.0]]), teacher_logits).item()
    assert agree == pytest.approx(0.0, abs=1e-6) and disagree > 1.0

    twin = FloatCoP("u-cnv", len(CLASSES))
    torch.save(twin.state_dict(), tmp_path / "twin.pt")
    loaded = load_teacher(tmp_path / "twin.pt", len(CLASSES))
    inputs = torch.zeros(2, 3, 32, 32)
    twin.eval()
    torch.testing.assert_close(loaded(inputs), twin(inputs))
    torch.save(FloatCoP("n-cnv", 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not the FP32 twin of any of cnv, n-cnv, u-cnv with 5 classes"):
        load_teacher(tmp_path / "other.pt", len(CLASSES))


def test_training_with_a_teacher_records_it(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from accel.nets import FloatCoP
    from lab.dataset import CropSet, save_crops
    from lab.train import TrainOptions, train

    rng = np.random.default_rng(1)
    labels = np.arange(64) % len(CLASSES)
    crops = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(crops, labels, np.array([f"file:x/{i}" for i in range(64)])), ["unused"])
    torch.save(FloatCoP("u-cnv", len(CLASSES)).state_dict(), tmp_path / "twin.pt")
    options = TrainOptions(arch="u-cnv", epochs=1, batch_size=32, teacher=tmp_path / "twin.pt")
    _, meta = train(["unused"], tmp_path / "m.npz", options, cache=cache)
    assert meta["teacher"] == "twin.pt" and load_model(tmp_path / "m.npz").arch.name == "u-cnv"
    assert load_model(tmp_path / "m.npz").meta["device"] == "cpu"


def test_a_crop_cache_is_reused_only_for_the_sources_it_was_made_from(tmp_path, monkeypatch, capsys):
    from lab.dataset import INCORRECT, CropSet, load_sources, save_crops

    folder = tmp_path / "faces"
    folder.mkdir()
    data = CropSet(np.zeros((3, 32, 32, 3), np.uint8), np.array([0, 4, INCORRECT]), np.array(["a", "b", "c"]))
    cache = tmp_path / "crops.npz"
    save_crops(cache, data, [f"no_mask={folder}"])
    monkeypatch.chdir(tmp_path)  # the same folder spelt relatively is the same source
    assert load_sources(["no_mask=faces"], cache, with_incorrect=True).labels.tolist() == [0, 4, INCORRECT]
    assert load_sources(["no_mask=faces"], cache).labels.tolist() == [0, 4]  # incorrectly worn left out
    with pytest.raises(
        ValueError, match=r"crop cache .*crops.npz was made from .*'no_mask=.*faces'.*'correct=.*faces'"
    ):
        load_sources(["correct=faces"], cache)
    # A cache that records no sources (an older one) is made again from the sources, not trusted
    np.savez(cache, crops=data.crops, labels=data.labels, groups=data.groups)
    assert len(load_sources(["faces"], cache)) == 0
    assert "does not record its sources" in capsys.readouterr().err
    with np.load(cache) as remade:
        assert remade["sources"].tolist() == [str(folder.resolve())]


def test_folds_hold_out_every_group_exactly_once():
    from lab.dataset import held_out_mask, split_of

    groups = np.array([f"ffhq:{i:05d}" for i in range(400)] + [f"image:scene{i}" for i in range(400)])
    masks = np.array([held_out_mask(groups, fold=(k, 5)) for k in range(5)])
    assert (masks.sum(axis=0) == 1).all()  # a partition: each group held out by one fold, trained on by the rest
    assert 0.1 < masks.mean(axis=1).min() and masks.mean(axis=1).max() < 0.3
    with pytest.raises(ValueError, match="fold 6 of 5"):
        split_of("ffhq:00001", fold=(5, 5))


def test_a_model_file_says_what_its_training_held_out():
    from lab.dataset import HELD_OUT_PERCENT, describe_held_out, held_out_of

    assert held_out_of({}) == (HELD_OUT_PERCENT, None)  # written before the record: the usual split
    for split in [(15, None), (20, None), (15, (1, 6))]:
        assert held_out_of({"held_out": describe_held_out(*split)}) == split
    with pytest.raises(ValueError, match="held_out 'half'"):
        held_out_of({"held_out": "half"})


def _voc_scenes(root, rng, count: int = 24):
    """Generated scenes with VOC boxes: a face-sized square per box, one of the three mask groups each."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    names = ["with_mask", "without_mask", "mask_weared_incorrect"]
    for i in range(count):
        cv2.imwrite(str(root / "images" / f"s{i}.jpg"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
        objects = "".join(
            f"<object><name>{names[(i + j) % 3]}</name><bndbox><xmin>{10 + 70 * j}</xmin><ymin>20</ymin>"
            f"<xmax>{50 + 70 * j}</xmax><ymax>{20 + size}</ymax></bndbox></object>"
            for j, size in enumerate((40, 16))  # the second box is below --min-face-px: not scored
        )
        (root / "annotations" / f"s{i}.xml").write_text(f"<annotation>{objects}</annotation>")


def test_crossval_scores_each_face_once_by_the_model_that_never_saw_it(tmp_path, capsys):
    """Two folds of a tiny recipe (µ-CNV, 1 epoch, a 1-epoch teacher, both folds trained at once in worker
    processes): every scene face of 24 px or more is scored once, each fold's model on its own fold only;
    a second run reuses the trained folds; other settings in the same folder are refused."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from lab.dataset import INCORRECT, CropSet, held_out_mask, save_crops

    rng = np.random.default_rng(0)
    labels = np.arange(240) % (INCORRECT + 1)
    crops = rng.integers(0, 256, (240, 32, 32, 3), dtype=np.uint8)
    groups = np.array([f"ffhq:{i:05d}" if labels[i] < 4 else f"file:x/{i}" for i in range(240)])
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(crops, labels, groups), ["unused"])
    _voc_scenes(tmp_path / "scenes", rng)
    out = tmp_path / "cv"
    args = ["-q", "crossval", "--arch", "u-cnv", "--data", "unused", "--scenes", str(tmp_path / "scenes")]
    args += ["--folds", "2", "--epochs", "1", "--teacher-epochs", "1", "--out", str(out), "--cache", str(cache)]
    assert main([*args, "--jobs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    scenes = result["pooled"]["scenes_ground_truth_boxes"]
    assert scenes["n"] == 24 and scenes["support"] == {"with_mask": 8, "mask_weared_incorrect": 8, "without_mask": 8}
    assert sum(fold["scenes_ground_truth_boxes"]["n"] for fold in result["per_fold"]) == 24
    assert min(fold["scenes_ground_truth_boxes"]["n"] for fold in result["per_fold"]) > 0
    mfn = [int(held_out_mask(groups[labels < 4], fold=(k, 2)).sum()) for k in range(2)]
    assert [fold["maskedface_4class"]["n"] for fold in result["per_fold"]] == mfn
    assert result["pooled"]["maskedface_4class"]["n"] == 160
    for k in range(2):
        meta = load_model(out / f"fold-{k + 1}.npz").meta
        assert meta["held_out"] == f"fold {k + 1} of 2" and meta["teacher"] == f"fold-{k + 1}-fp32.pt"
        assert meta["framing"] == {"margin": 0.2, "drop": 0.0}
    # the FP32 twins (the teachers) are scored beside their students, each on its own fold
    twin = result["twin"]
    assert [fold["scenes_ground_truth_boxes"]["n"] for fold in twin["per_fold"]] == [
        fold["scenes_ground_truth_boxes"]["n"] for fold in result["per_fold"]
    ]
    from lab.crossval import scene_faces
    from lab.dataset import split_of
    from lab.train import load_teacher, predict

    faces = scene_faces(tmp_path / "scenes")
    called_correct = 0
    for k in range(2):
        mine = [i for i, name in enumerate(faces.images) if split_of(f"image:{name}", fold=(k, 2))]
        teacher = load_teacher(out / f"fold-{k + 1}-fp32.pt", len(CLASSES))
        called_correct += int((predict(teacher, faces.crops[mine]) == CLASSES.index("correct")).sum())
    confusion = np.array(twin["pooled"]["scenes_ground_truth_boxes"]["confusion"])
    assert confusion[:, CLASSES.index("correct")].sum() == called_correct
    trained = (out / "fold-1.npz").stat().st_mtime_ns
    assert main([*args, "--jobs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result and (out / "fold-1.npz").stat().st_mtime_ns == trained
    assert main([*args[:-6], "--epochs", "2", "--teacher-epochs", "1", "--out", str(out), "--cache", str(cache)]) == 2
    assert "epochs: 1 there, 2 now" in capsys.readouterr().err
    # what a fold model held out is what `eval --held-out` and `eval-scenes` score it on
    fold_1 = str(out / "fold-1.npz")
    assert (
        main(["-q", "eval", "--model", fold_1, "--data", "unused", "--cache", str(cache), "--held-out", "--json"]) == 0
    )
    scored = json.loads(capsys.readouterr().out)["n"]
    assert scored == int((held_out_mask(groups, fold=(0, 2)) & (labels < INCORRECT)).sum())
    assert main(["-q", "eval-scenes", "--model", fold_1, "--data", str(tmp_path / "scenes"), "--json"]) == 0
    scenes_1 = json.loads(capsys.readouterr().out)
    assert scenes_1["held_out"] == "fold 1 of 2"
    assert scenes_1["faces_min_px"] == result["per_fold"][0]["scenes_ground_truth_boxes"]["n"]
    both = ["--model", fold_1, "--model", str(out / "fold-2.npz")]
    assert main(["-q", "eval-scenes", *both, "--data", str(tmp_path / "scenes")]) == 2
    assert "held out different splits in training (" in capsys.readouterr().err


def test_crops_cut_with_another_framing_are_never_reused(tmp_path):
    """A crop cache records how its crops were cut: asking for another framing (or exact positions) refuses it
    instead of training on crops the model would not see live."""
    from lab.dataset import CropSet, load_sources, save_crops

    groups = np.array(["file:x/0", "file:x/1", "file:x/2"])
    data = CropSet(np.zeros((3, 32, 32, 3), np.uint8), np.array([0, 4, 0]), groups)
    cache = tmp_path / "crops.npz"
    save_crops(cache, data, ["no_mask=faces"])
    assert len(load_sources(["no_mask=faces"], cache)) == 3
    with pytest.raises(ValueError, match="framing: margin 0.2, drop 0.15"):
        load_sources(["no_mask=faces"], cache, framing=Framing(0.2, 0.15))
    with pytest.raises(ValueError, match="exact positions"):
        load_sources(["no_mask=faces"], cache, exact_positions=True)
    save_crops(cache, data, ["no_mask=faces"], Framing(0.4, 0.2))
    assert len(load_sources(["no_mask=faces"], cache, framing=Framing(0.4, 0.2))) == 3


@pytest.mark.parametrize(
    "extra, problem",
    [
        (["--folds", "1"], "--folds 1: cross-validation needs 2 to 100 folds"),
        (["--folds", "101"], "--folds 101: cross-validation needs 2 to 100 folds"),
        (["--jobs", "0"], "--jobs 0: expected 1 or more"),
        (["--scenes", "nowhere"], "nowhere: expected Pascal VOC scenes (annotations/ and images/)"),
    ],
)
def test_crossval_refuses_bad_settings_before_training(tmp_path, capsys, extra, problem):
    pytest.importorskip("torch", reason="training needs the train extra")
    _voc_scenes(tmp_path / "scenes", np.random.default_rng(0), count=2)
    args = ["-q", "crossval", "--data", "unused", "--scenes", str(tmp_path / "scenes"), "--out", str(tmp_path / "cv")]
    assert main([*args, *extra]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()  # nothing started


def test_crossval_trains_each_fold_progressively_when_asked(tmp_path, capsys):
    """``--progressive-epochs``: each fold first trains binary activations over float weights, then its binary
    model starts from them; the plan records it, so a rerun with other settings is refused."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from lab.dataset import INCORRECT, CropSet, save_crops

    rng = np.random.default_rng(1)
    labels = np.arange(120) % (INCORRECT + 1)
    groups = np.array([f"file:x/{i}" for i in range(120)])
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), labels, groups), ["unused"])
    _voc_scenes(tmp_path / "scenes", rng, count=4)
    out = tmp_path / "cv"
    args = ["-q", "crossval", "--arch", "u-cnv", "--data", "unused", "--scenes", str(tmp_path / "scenes")]
    args += ["--folds", "2", "--epochs", "1", "--out", str(out), "--cache", str(cache), "--json"]
    assert main([*args, "--progressive-epochs", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["progressive_epochs"] == 1
    for k in (1, 2):
        assert (out / f"fold-{k}-float-weights.pt").is_file()
        assert load_model(out / f"fold-{k}.npz").meta["initialised_from"] == f"fold-{k}-float-weights.pt"
    assert main(args) == 2
    assert "progressive_epochs: 1 there, 0 now" in capsys.readouterr().err
