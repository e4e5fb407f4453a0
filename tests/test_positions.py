"""Mask position on real incorrectly worn faces: ``positions.csv`` read by ``eval-scenes`` and ``crossval``."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from accel import CLASSES, make_classifier
from binarycop.cli import main
from detector.faces import crop_faces

HEADER = "image,xmin,ymin,xmax,ymax,position,note\n"


def test_position_recalls_counts_exact_positions_and_sets_the_rest_apart():
    from lab.scenes import position_recalls

    truth = ["nose", "nose", "nose", "nose_mouth", "nose_mouth", "chin", "other", "other", "unsure", "correct", None]
    called = ["nose", "correct", "nose_mouth", "no_mask", "nose_mouth", "chin", "correct", "nose", "no_mask", "correct"]
    result = position_recalls(truth, [*called, "nose"], CLASSES)
    assert result["n"] == 6  # other, unsure, correct and the unlabelled face are left out
    assert result["support"] == {"nose": 3, "nose_mouth": 2, "chin": 1}
    assert result["recall"] == pytest.approx({"nose": 1 / 3, "nose_mouth": 1 / 2, "chin": 1.0})
    assert result["macro_mean"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # chin is not in the macro mean
    assert result["exact"] == pytest.approx(3 / 6)
    assert result["some_incorrect"] == pytest.approx({"nose": 2 / 3, "nose_mouth": 1 / 2, "chin": 1.0})
    assert result["some_incorrect_all"] == pytest.approx(4 / 6)
    # rows: labelled positions; columns: the model's classes, so nose_mouth called no_mask shows
    assert result["confusion"] == [[1, 1, 1, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0]]
    assert result["apart"]["other"] == {"n": 2, "called": {"correct": 1, "nose": 1, "nose_mouth": 0, "chin": 0,
                                                           "no_mask": 0}}  # fmt: skip
    assert result["apart"]["unsure"]["called"]["no_mask"] == 1 and result["apart"]["correct"]["n"] == 1
    assert result["unlabelled"] == 1
    low, high = result["recall_interval_95"]["nose"]
    assert low < 1 / 3 < high
    empty = position_recalls(["nose"], ["nose"], CLASSES)
    assert empty["recall"]["nose_mouth"] is None and empty["macro_mean"] is None  # no nose_mouth: no macro mean


def _real_scenes_with_positions(shared_data, tmp_path, count: int = 8):
    """``count`` held-out real scenes holding labelled incorrectly worn faces and one with masked faces only, copied
    with their rows of the shipped positions.csv; one row each turned to ``other`` and ``unsure`` so the set-apart
    faces are exercised."""
    from lab.scenes import scene_split

    shipped = list(csv.DictReader(open(shared_data / "scenes" / "positions.csv", newline="")))
    labelled_images = {row["image"] for row in shipped}
    held_out = scene_split(shared_data / "scenes", "held-out")
    chosen = [s for s in held_out if s.image_path.name in labelled_images][:count]
    chosen.append(next(s for s in held_out if "with_mask" in s.groups and s.image_path.name not in labelled_images))
    chosen.sort(key=lambda scene: scene.name)  # the order scene_split reads them
    for folder in ("images", "annotations"):
        (tmp_path / folder).mkdir(parents=True)
    for scene in chosen:
        shutil.copy(scene.image_path, tmp_path / "images" / scene.image_path.name)
        shutil.copy(shared_data / "scenes" / "annotations" / f"{scene.name}.xml", tmp_path / "annotations")
    names = {scene.image_path.name for scene in chosen}
    rows = [row for row in shipped if row["image"] in names]
    rows[0]["position"], rows[1]["position"] = "other", "unsure"
    with open(tmp_path / "positions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(shipped[0]))
        writer.writeheader()
        writer.writerows(rows)
    return chosen, rows


def _expected(classifier, scenes, rows, crops_of) -> tuple[list, dict]:
    """Position x class confusion and the set-apart counts, computed here face by face from ``crops_of(scene)``:
    (crops, True per box that was scored)."""
    label = {(r["image"], tuple(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))): r["position"] for r in rows}
    confusion = np.zeros((3, len(CLASSES)), int)
    apart: dict = {}
    for scene in scenes:
        crops, scored = crops_of(scene)
        called = [classifier.classes[c] for c in classifier.classify(crops)] if len(crops) else []
        for name, box in zip(called, scene.boxes[scored].tolist()):
            position = label.get((scene.image_path.name, tuple(box)))
            if position in ("nose", "nose_mouth", "chin"):
                confusion[("nose", "nose_mouth", "chin").index(position), CLASSES.index(name)] += 1
            elif position is not None:
                apart.setdefault(position, []).append(name)
    return confusion.tolist(), apart


def test_eval_scenes_reports_positions_of_real_faces(shared_data, tmp_path, capsys):
    """Real scenes and the real n-CNV: the position figures equal those computed here face by face, with
    ground-truth boxes and end to end (the server's default detector, matched as eval-scenes matches)."""
    from lab.scan import offline_detector
    from lab.scenes import match_boxes, scene_split

    chosen, rows = _real_scenes_with_positions(shared_data, tmp_path / "scenes")
    plot = tmp_path / "positions.png"
    argv = ["-q", "eval-scenes", "--data", str(tmp_path / "scenes"), "--plot-positions", str(plot), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    positions = result["positions"]
    assert positions["file"] == str(tmp_path / "scenes" / "positions.csv") and positions["rows"] == len(rows)
    classifier = make_classifier("cpu", "n-cnv")
    scenes = scene_split(tmp_path / "scenes", "held-out")
    assert [s.name for s in scenes] == [s.name for s in chosen]

    def truth_crops(scene):
        large = scene.large(24)
        return crop_faces(scene.read(), scene.boxes[large]), large

    detector = offline_detector()

    def detected_crops(scene):
        faces = detector.detect(scene.read())
        matched = match_boxes(scene.boxes, faces.boxes)
        scored = scene.large(24) & (matched >= 0)
        return faces.crops[matched[scored]], scored

    for key, crops_of in (("ground_truth_boxes", truth_crops), ("end_to_end", detected_crops)):
        part = positions[key]
        confusion, apart = _expected(classifier, scenes, rows, crops_of)
        assert part["confusion"] == confusion, key
        for name in ("other", "unsure"):
            assert part["apart"][name]["n"] == len(apart.get(name, []))
            assert part["apart"][name]["called"] == {c: apart.get(name, []).count(c) for c in CLASSES}
        for row, position in enumerate(("nose", "nose_mouth", "chin")):
            n = sum(confusion[row])
            assert part["support"][position] == n
            hits = confusion[row][CLASSES.index(position)]
            assert part["recall"][position] == (pytest.approx(hits / n) if n else None)
        recalls = [part["recall"]["nose"], part["recall"]["nose_mouth"]]
        assert part["macro_mean"] == (pytest.approx(np.mean(recalls)) if None not in recalls else None)
        assert part["unlabelled"] == 0
    ground = positions["ground_truth_boxes"]
    assert ground["n"] + ground["apart"]["other"]["n"] + ground["apart"]["unsure"]["n"] == len(rows)
    for name in ("other", "unsure"):
        assert ground["apart"][name]["n"] == sum(row["position"] == name for row in rows) > 0
    assert ground["support"]["nose"] and ground["support"]["nose_mouth"] and ground["macro_mean"] is not None
    assert positions["end_to_end"]["n"] <= ground["n"]
    picture = cv2.imread(str(plot))
    assert picture is not None and picture.shape[0] > 2 * 3 * 86  # two panels of three position rows
    # the same figures in text, and with the file named explicitly
    moved = tmp_path / "elsewhere.csv"
    shutil.move(tmp_path / "scenes" / "positions.csv", moved)
    assert main(["-q", "eval-scenes", "--data", str(tmp_path / "scenes")]) == 0
    assert "positions" not in capsys.readouterr().out  # no file beside the annotations: no position figures
    assert main(["-q", "eval-scenes", "--data", str(tmp_path / "scenes"), "--positions", str(moved)]) == 0
    text = capsys.readouterr().out
    assert f"positions ({moved}, {len(rows)} rows" in text
    nose = ground["confusion"][0]
    assert f"      nose{ground['support']['nose']:>12} " + "".join(f"{k:>11}" for k in nose) in text
    assert f"apart (not in the figures): correct 0: -; other {ground['apart']['other']['n']}: " in text


@pytest.mark.parametrize(
    "row, problem",
    [
        ("{image},{x0},{y0},{x1},{y1p},nose,", "has no VOC box at"),
        ("nowhere.jpg,{x0},{y0},{x1},{y1},nose,", "no labelled scene image 'nowhere.jpg'"),
        ("{image},{x0},{y0},{x1},{y1},mouth,", "position 'mouth': expected one of nose, nose_mouth, chin"),
        ("{image},{x0},{y0},wide,{y1},nose,", "xmin, ymin, xmax, ymax must be numbers"),
        ("{image},{x0},{y0},{x1},{y1},nose,\n{image},{x0},{y0},{x1},{y1},chin,", "line 3 ("),
        ("{image},{m0},{m1},{m2},{m3},nose,", "labelled with_mask, not mask_weared_incorrect"),
    ],
)
def test_a_bad_positions_row_is_a_clear_error(shared_data, tmp_path, capsys, row, problem):
    """A row that does not name one incorrectly worn VOC box exactly fails before any image is scored."""
    chosen, rows = _real_scenes_with_positions(shared_data, tmp_path / "scenes")
    first = rows[0]
    box = [first[k] for k in ("xmin", "ymin", "xmax", "ymax")]
    masked = next((s, b) for s in chosen for b, g in zip(s.boxes.tolist(), s.groups) if g == "with_mask")
    line = row.format(
        image=first["image"] if "{m0}" not in row else masked[0].image_path.name,
        x0=box[0],
        y0=box[1],
        x1=box[2],
        y1=box[3],
        y1p=float(box[3]) + 1,
        m0=f"{masked[1][0]:g}",
        m1=f"{masked[1][1]:g}",
        m2=f"{masked[1][2]:g}",
        m3=f"{masked[1][3]:g}",
    )
    (tmp_path / "scenes" / "positions.csv").write_text(HEADER + line + "\n")
    assert main(["-q", "eval-scenes", "--data", str(tmp_path / "scenes")]) == 2
    error = capsys.readouterr().err
    assert problem in error and "positions.csv line " in error


def test_position_options_are_checked_first(shared_data, tmp_path, capsys):
    _real_scenes_with_positions(shared_data, tmp_path / "scenes", count=2)
    data = ["-q", "eval-scenes", "--data", str(tmp_path / "scenes")]
    assert main([*data, "--positions", str(tmp_path / "none.csv")]) == 2
    assert f"--positions {tmp_path / 'none.csv'}: no such file" in capsys.readouterr().err
    assert main([*data, "--plot-positions", str(tmp_path / "p.jpg")]) == 2
    assert "--plot-positions " in capsys.readouterr().err
    assert main([*data, "--model", "n-cnv", "--model", "u-cnv", "--plot-positions", str(tmp_path / "p.png")]) == 2
    assert "give one --model with it" in capsys.readouterr().err
    (tmp_path / "scenes" / "positions.csv").unlink()
    assert main([*data, "--plot-positions", str(tmp_path / "p.png")]) == 2
    assert "--plot-positions: no positions.csv in" in capsys.readouterr().err
    (tmp_path / "scenes" / "positions.csv").write_text("image,box,position\n")
    assert main(data) == 2
    assert "no column xmin, ymin, xmax, ymax; expected the header" in capsys.readouterr().err


def test_crossval_scores_positions_per_fold_with_their_images(tmp_path, capsys):
    """Two folds of a tiny recipe (µ-CNV, 1 epoch) on generated scenes with a positions.csv beside them: each fold's
    model scores the positions of its own fold's images only, the per-fold figures add up to the pooled ones, and
    both equal the fold models' own calls on those faces."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from accel.cpu import CpuClassifier
    from lab.dataset import INCORRECT, CropSet, save_crops, split_of
    from lab.scenes import scene_split
    from tests.test_model_quality import _voc_scenes

    rng = np.random.default_rng(0)
    labels = np.arange(240) % (INCORRECT + 1)
    groups = np.array([f"ffhq:{i:05d}" if labels[i] < 4 else f"file:x/{i}" for i in range(240)])
    cache = tmp_path / "crops.npz"
    save_crops(cache, CropSet(rng.integers(0, 256, (240, 32, 32, 3), dtype=np.uint8), labels, groups), ["unused"])
    scenes_dir = tmp_path / "scenes"
    _voc_scenes(scenes_dir, rng)
    cycle = ["nose", "nose_mouth", "chin", "other", "nose", "unsure", "nose_mouth"]  # the 8th large face: no row
    rows, truth = [], {}
    for scene in scene_split(scenes_dir, "all"):
        for box, group, large in zip(scene.boxes.tolist(), scene.groups, scene.large(24)):
            if group == "mask_weared_incorrect" and (not large or len(truth) < len(cycle)):
                position = cycle[len(truth)] if large else "nose"  # a small face's row is read, never scored
                rows.append(f"{scene.image_path.name},{','.join(f'{v:g}' for v in box)},{position},")
                if large:
                    truth[scene.name] = position
    (scenes_dir / "positions.csv").write_text(HEADER + "\n".join(rows) + "\n")
    out = tmp_path / "cv"
    args = ["-q", "crossval", "--arch", "u-cnv", "--data", "unused", "--scenes", str(scenes_dir), "--folds", "2"]
    args += ["--epochs", "1", "--out", str(out), "--cache", str(cache)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["positions_file"] == str(scenes_dir / "positions.csv")
    pooled = result["pooled"]["positions_ground_truth_boxes"]
    expected_pooled = np.zeros((3, len(CLASSES)), int)
    for k, fold in enumerate(result["per_fold"]):
        classifier = CpuClassifier(str(out / f"fold-{k + 1}.npz"))
        confusion = np.zeros((3, len(CLASSES)), int)
        apart = {"other": 0, "unsure": 0}
        unlabelled = 0
        for scene in scene_split(scenes_dir, "all"):
            if not split_of(f"image:{scene.name}", fold=(k, 2)):
                continue  # another fold's image: that fold's model scores it
            large = scene.large(24)
            called = classifier.classify(crop_faces(scene.read(), scene.boxes[large]))
            for group, c in zip([g for g, big in zip(scene.groups, large) if big], called):
                if group != "mask_weared_incorrect":
                    continue
                position = truth.get(scene.name)
                if position in apart:
                    apart[position] += 1
                elif position is None:
                    unlabelled += 1
                else:
                    confusion[("nose", "nose_mouth", "chin").index(position), c] += 1
        part = fold["positions_ground_truth_boxes"]
        assert part["confusion"] == confusion.tolist()
        assert {name: part["apart"][name]["n"] for name in apart} == apart and part["unlabelled"] == unlabelled
        expected_pooled += confusion
    assert pooled["confusion"] == expected_pooled.tolist()
    assert pooled["n"] == sum(p in ("nose", "nose_mouth", "chin") for p in truth.values()) == 5
    assert pooled["support"] == {"nose": 2, "nose_mouth": 2, "chin": 1}
    assert pooled["apart"]["other"]["n"] == pooled["apart"]["unsure"]["n"] == pooled["unlabelled"] == 1
    assert min(fold["positions_ground_truth_boxes"]["n"] for fold in result["per_fold"]) > 0  # both folds score some
    assert main(args) == 0  # the trained folds are reused; the text prints the same figures
    text = capsys.readouterr().out
    assert f"positions ({scenes_dir / 'positions.csv'}), ground-truth boxes" in text
    macro = pooled["macro_mean"]
    assert (
        f"  pooled: exact position of 5 labelled incorrectly worn faces; macro over nose and nose_mouth {macro:.1%}"
        in text
    )
    # a bad row fails before any fold is trained
    (scenes_dir / "positions.csv").write_text(HEADER + "s0.jpg,1,2,3,4,nose,\n")
    assert main([*args[:-4], "--out", str(tmp_path / "cv2"), "--cache", str(cache)]) == 2
    assert "positions.csv line 2 (s0.jpg,1,2,3,4,nose): s0.jpg has no VOC box at 1,2,3,4" in capsys.readouterr().err
    assert not (tmp_path / "cv2").exists()


def test_a_positions_file_from_a_spreadsheet_is_read_and_a_binary_one_refused(shared_data, tmp_path):
    from lab.scenes import read_positions

    _, rows = _real_scenes_with_positions(shared_data, tmp_path / "scenes", count=2)
    path = tmp_path / "scenes" / "positions.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))  # BOM and CRLF, as Excel writes
    table = read_positions(path, tmp_path / "scenes")
    assert sorted(table.values()) == sorted(row["position"] for row in rows) and len(table) == len(rows)
    path.write_bytes(b"\xff\xfe" + "image".encode("utf-16-le"))
    with pytest.raises(ValueError, match="positions.csv: not UTF-8 text"):
        read_positions(path, tmp_path / "scenes")
