"""What the model lab trains on: exact positions from positions.csv, folders of incorrectly worn faces, and
near-duplicate pictures kept on one side of every split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from accel import CLASSES
from detector import Framing
from lab.dataset import INCORRECT, CropMaker, average_hash, load_source, near_duplicate_groups


def _scenes(root, rng):
    """Two noise images, each with two incorrectly worn faces and one correctly masked, as Pascal VOC."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "images" / f"s{i}.jpg"), rng.integers(0, 256, (120, 200, 3), dtype=np.uint8))
        names = ("mask_weared_incorrect", "mask_weared_incorrect", "with_mask")
        objects = "".join(
            f"<object><name>{name}</name><bndbox><xmin>{10 + 60 * j}</xmin><ymin>20</ymin>"
            f"<xmax>{50 + 60 * j}</xmax><ymax>70</ymax></bndbox></object>"
            for j, name in enumerate(names)
        )
        (root / "annotations" / f"s{i}.xml").write_text(f"<annotation>{objects}</annotation>")
    (root / "positions.csv").write_text(
        "image,xmin,ymin,xmax,ymax,position,note\n"
        "s0.jpg,10,20,50,70,nose_mouth,\n"
        "s0.jpg,70,20,110,70,other,mask over the eyes\n"
        "s1.jpg,10,20,50,70,nose,\n"
    )


def test_exact_positions_label_the_faces_positions_csv_places(tmp_path):
    _scenes(tmp_path, np.random.default_rng(0))
    exact = load_source(str(tmp_path), CropMaker(exact_positions=True), with_incorrect=True)
    joint = load_source(str(tmp_path), CropMaker(), with_incorrect=True)
    correct, nose, nose_mouth = (CLASSES.index(name) for name in ("correct", "nose", "nose_mouth"))
    # per image, in VOC order: placed faces get their position; 'other' and unlabelled keep the joint label
    assert exact.labels.tolist() == [nose_mouth, INCORRECT, correct, nose, INCORRECT, correct]
    assert joint.labels.tolist() == [INCORRECT, INCORRECT, correct, INCORRECT, INCORRECT, correct]


def test_a_folder_named_incorrect_holds_incorrectly_worn_faces(tmp_path):
    rng = np.random.default_rng(1)
    for folder in ("correct", "incorrect", "no_mask"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.jpg"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = load_source(str(tmp_path), CropMaker(), with_incorrect=True)
    assert sorted(data.labels.tolist()) == sorted([CLASSES.index("correct"), INCORRECT, CLASSES.index("no_mask")])
    forced = load_source(f"incorrect={tmp_path / 'correct'}", CropMaker(), with_incorrect=True)
    assert forced.labels.tolist() == [INCORRECT]
    with pytest.raises(ValueError, match="unknown class 'hat'"):
        load_source(f"hat={tmp_path}", CropMaker())


def test_near_duplicates_share_the_first_pictures_group_without_chaining():
    base = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    copy = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)  # the same picture, a little brighter
    other = np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)
    hashes = [average_hash(image) for image in (base, other, copy)]
    assert near_duplicate_groups(np.array(hashes, np.uint64), ["a", "b", "c"]) == ["a", "b", "a"]
    # a chain of pictures each 4 bits from the one before: only those within 6 bits of a group's first join it
    chain = np.array([0, 0b1111, 0b11111111, 0b111111111111], np.uint64)
    assert near_duplicate_groups(chain, ["p", "q", "r", "s"]) == ["p", "p", "r", "r"]


def test_near_duplicate_grouping_is_asked_for_and_recorded(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "no_mask").mkdir()
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "no_mask" / f"{name}.png"), picture)
    assert len(set(load_source(str(tmp_path), CropMaker()).groups)) == 2
    assert len(set(load_source(str(tmp_path), CropMaker(near_duplicates=True)).groups)) == 1


def test_unlabelled_scene_faces_are_the_detections_no_box_labels(tmp_path, shared_data):
    """A real group photo annotated with one face only: the other faces found come back unlabelled, grouped by
    the image, so a fold that holds the image out holds them out too."""
    from detector import iou_matrix
    from lab.scan import offline_detector
    from lab.unlabelled import UNLABELLED, load_unlabelled

    image = cv2.imread(str(shared_data / "scenes" / "misc" / "fr_two_people.jpg"))
    boxes = offline_detector().detect(image, with_crops=False).boxes
    assert len(boxes) >= 2
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "two.jpg"), image)
    x1, y1, x2, y2 = (int(v) for v in boxes[0])
    (tmp_path / "annotations" / "two.xml").write_text(
        f"<annotation><object><name>with_mask</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object></annotation>"
    )
    found = load_unlabelled([str(tmp_path)], cache=tmp_path / "unlabelled.npz")
    assert len(found) == len(boxes) - 1 and set(found.labels.tolist()) == {UNLABELLED}
    assert set(found.groups.tolist()) == {"image:two"}
    assert (load_unlabelled([str(tmp_path)], cache=tmp_path / "unlabelled.npz").crops == found.crops).all()
    assert iou_matrix(boxes[:1], boxes[1:]).max() < 0.4  # the labelled face was not among them


def test_training_distils_on_unlabelled_video_faces_and_needs_a_teacher(tmp_path, capsys):
    """One epoch of a tiny µ-CNV with a teacher and the bundled clip's faces as unlabelled data: the model file
    records how many unlabelled crops it learnt from; without a teacher the command refuses, saying why."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from accel import load_model
    from binarycop.cli import main
    from lab.dataset import CropSet, save_crops

    rng = np.random.default_rng(5)
    labels = np.arange(64) % 5
    groups = np.array([f"file:x/{i}" for i in range(64)])
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), labels, groups), ["unused"])
    clip = str(Path(__file__).resolve().parents[1] / "binarycop" / "assets" / "demo_clip.mp4")
    common = ["-q", "train", "--arch", "u-cnv", "--data", "unused", "--cache", str(cache), "--epochs", "1"]
    assert main([*common, "--fp32", "--out", str(tmp_path / "twin.npz")]) == 0
    out = tmp_path / "student.npz"
    assert main([*common, "--teacher", str(tmp_path / "twin.pt"), "--unlabelled", clip, "--out", str(out)]) == 0
    meta = load_model(out).meta
    assert meta["unlabelled"] == ["demo_clip.mp4"] and meta["unlabelled_crops"] > 20
    assert main([*common, "--unlabelled", clip, "--out", str(tmp_path / "alone.npz")]) == 2
    assert "unlabelled sources teach through a teacher's outputs: give --teacher" in capsys.readouterr().err


def test_framing_report_measures_how_much_of_the_labelled_box_a_crop_keeps(tmp_path, shared_data):
    """Real faces annotated with boxes reaching 30 % of their height below the detector's (a mask on the chin):
    today's crop (square + 20 %) cuts every one of them, the square + 40 % moved down 20 % keeps them whole."""
    from lab.framing import framing_report
    from lab.scan import offline_detector

    image = cv2.imread(str(shared_data / "scenes" / "misc" / "fr_two_people.jpg"))
    boxes = offline_detector().detect(image, with_crops=False).boxes
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "two.jpg"), image)
    objects = ""
    for x1, y1, x2, y2 in boxes:
        low = y2 + 0.3 * (y2 - y1)
        objects += (
            f"<object><name>with_mask</name><bndbox><xmin>{x1:.0f}</xmin><ymin>{y1:.0f}</ymin><xmax>{x2:.0f}</xmax>"
            f"<ymax>{low:.0f}</ymax></bndbox></object>"
        )
    (tmp_path / "annotations" / "two.xml").write_text(f"<annotation>{objects}</annotation>")
    report = framing_report(tmp_path, [Framing(), Framing(0.4, 0.2)])
    today, lower = (report[name]["faces"]["with_mask"] for name in ("square +20%", "square +40%, +20% down"))
    assert today["faces"] == lower["faces"] == len(boxes) >= 2
    assert today["kept_whole"] == 0 and today["median_cut_below"] > 0.1
    assert lower["kept_whole"] == 1 and lower["median_cut_below"] == 0


def test_progressive_training_binarises_the_weights_of_a_binary_activation_network(tmp_path):
    """Stage one: binary activations over float weights (a .pt, no model file: it cannot be folded); stage two:
    binary weights initialised from it, folded into a model file that the CPU engine runs like its torch network."""
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from accel import load_model
    from accel.cpu import CpuClassifier
    from accel.nets import BinaryCoP, crops_to_tensor
    from binarycop.cli import main
    from lab.dataset import CropSet, save_crops

    rng = np.random.default_rng(6)
    crops = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    groups = np.array([f"file:x/{i}" for i in range(64)])
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(crops, np.arange(64) % 5, groups), ["unused"])
    common = ["-q", "train", "--arch", "u-cnv", "--data", "unused", "--cache", str(cache), "--epochs", "1"]
    assert main([*common, "--float-weights", "--out", str(tmp_path / "stage.npz")]) == 0
    assert (tmp_path / "stage.pt").is_file() and not (tmp_path / "stage.npz").exists()
    stage = torch.load(tmp_path / "stage.pt", weights_only=True)
    assert len({float(v) for v in stage["convs.1.weight"].flatten()}) > 2  # float weights, not two values
    assert main([*common, "--init", str(tmp_path / "stage.pt"), "--out", str(tmp_path / "binary.npz")]) == 0
    model = load_model(tmp_path / "binary.npz")
    assert model.meta["initialised_from"] == "stage.pt"
    network = BinaryCoP("u-cnv", 5)
    network.load_state_dict(torch.load(tmp_path / "binary.pt", weights_only=True))
    with torch.no_grad():
        reference = network.eval()(crops_to_tensor(crops)).numpy().round().astype(np.int32)
    np.testing.assert_array_equal(CpuClassifier(model).scores(crops), reference)
