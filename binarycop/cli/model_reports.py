"""The text reports of the model lab's commands (their ``--json`` documents hold the same figures)."""

from __future__ import annotations


def print_crossval(result: dict, arch: str, folds: int) -> None:
    print(f"{arch}, {folds} folds: each model scored on the fold it never saw (95 % intervals)")
    for fold in result["per_fold"]:
        scenes = fold["scenes_ground_truth_boxes"]
        print(
            f"  fold {fold['fold']}: MaskedFace-Net {percent(fold['maskedface_4class']['value'])}, "
            f"no_mask {percent(fold['no_mask_recall']['value'])}, scenes "
            + " / ".join(percent(value) for value in scenes["recall"].values())
            + f" mean {percent(scenes['mean'])} ({scenes['support']['mask_weared_incorrect']} incorrectly worn)"
        )
    pooled = result["pooled"]
    scenes = pooled["scenes_ground_truth_boxes"]
    for key, label in (("maskedface_4class", "MaskedFace-Net 4-class"), ("no_mask_recall", "no_mask recall")):
        print(
            f"pooled {label}: {_with_interval(pooled[key]['value'], pooled[key]['interval_95'])} of {pooled[key]['n']}"
        )
    for group, recall in scenes["recall"].items():
        print(
            f"pooled scenes {group}: {_with_interval(recall, scenes['recall_interval_95'][group])} "
            f"of {scenes['support'][group]}"
        )
    spread = result["scene_mean_over_folds"]
    print(
        f"pooled scenes mean {percent(scenes['mean'])}; fold means {percent(spread['min'])} to "
        f"{percent(spread['max'])}, median {percent(spread['median'])}"
    )
    if "positions_ground_truth_boxes" in pooled:
        print(f"positions ({result['positions_file']}), ground-truth boxes, each fold's model on its own fold:")
        for fold in result["per_fold"]:
            part = fold["positions_ground_truth_boxes"]
            print(
                f"  fold {fold['fold']}: "
                + ", ".join(f"{p} {percent(part['recall'][p])} of {part['support'][p]}" for p in part["positions"])
                + f"; macro {percent(part['macro_mean'])}"
            )
        print_positions("pooled", pooled["positions_ground_truth_boxes"])


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _with_interval(value: float | None, interval) -> str:
    return percent(value) if interval is None else f"{percent(value)} [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]"


def _group_recall_text(part: dict, group: str) -> str:
    """``with_mask 91.5% [88%-94%] of 270`` (recall, its 95 % interval, support) or ``with_mask -``."""
    recall = part["recall"][group]
    if recall is None:
        return f"{group} -"
    low, high = part["recall_interval_95"][group]
    return f"{group} {recall:.1%} [{low:.0%}-{high:.0%}] of {part['support'][group]}"


def print_scene_result(result: dict) -> None:
    detection = result["detection"]
    print(
        f"{result['model']} on {result['images']} {result['split']} scenes ({result['held_out']} held out in "
        f"training): {result['faces']} faces, "
        f"{result['faces_min_px']} >= {result['min_face_px']} px; detector {result.get('detector', '-')}"
    )
    by_group = ", ".join(f"{g} {percent(r)}" for g, r in detection["recall_min_px_by_group"].items())
    print(
        f"  detection recall (IoU >= 0.4): all {detection['recall_all']:.1%}, large {detection['recall_min_px']:.1%}"
        f" ({by_group})"
    )
    for key in ("end_to_end", "ground_truth_boxes"):
        part = result[key]
        recalls = ", ".join(_group_recall_text(part, group) for group in part["recall"])
        print(f"  {key:<18} n={part['n']:<5} {recalls}; mean {percent(part['mean'])}")
    operator = result["operator"]
    flagged = operator["noncompliant_flagged"]
    interval = operator["noncompliant_flagged_interval_95"]
    print(
        f"  operator reads     compliance {percent(operator['compliance_read'])} of {operator['faces_counted']} faces "
        f"counted, truth {percent(operator['compliance_true'])} of {operator['faces_true']}; mean abs error over "
        f"{operator['groups']} groups of {operator['group_photos']} photos "
        f"{_points(operator['mean_abs_error'])} (mean {_points(operator['mean_error'], signed=True)}); "
        f"non-compliant flagged {percent(flagged)}"
        + (f" [{interval[0]:.0%}-{interval[1]:.0%}] of {operator['noncompliant']}" if interval else "")
    )
    positions = result.get("positions")
    if positions:
        print(f"  positions ({positions['file']}, {positions['rows']} rows; correct/other/unsure apart):")
        for key in ("end_to_end", "ground_truth_boxes"):
            print_positions(key, positions[key], "    ")


def print_positions(label: str, part: dict, indent: str = "  ") -> None:
    """The position figures of ``lab.scenes.position_recalls``: a confusion table with each row's exact-position
    recall and share called some incorrect position (95 % intervals), the macro mean, the faces reported apart."""
    classes = part["classes"]
    print(
        f"{indent}{label}: exact position of {part['n']} labelled incorrectly worn faces; macro over "
        f"{' and '.join(part['macro_positions'])} {percent(part['macro_mean'])}; all three "
        f"{_with_interval(part['exact'], part['exact_interval_95'])}, some incorrect position "
        f"{_with_interval(part['some_incorrect_all'], part['some_incorrect_all_interval_95'])}"
    )
    print(
        f"{indent}  {'labelled':<11}{'n':>5} "
        + "".join(f"{c:>11}" for c in classes)
        + "   exact [95 %]   some incorrect"
    )
    for row, position in enumerate(part["positions"]):
        print(
            f"{indent}  {position:<11}{part['support'][position]:>5} "
            + "".join(f"{count:>11}" for count in part["confusion"][row])
            + f"   {_with_interval(part['recall'][position], part['recall_interval_95'][position]):<15}"
            + f" {_with_interval(part['some_incorrect'][position], part['some_incorrect_interval_95'][position])}"
        )
    apart = "; ".join(
        f"{name} {value['n']}: " + (", ".join(f"{c} {k}" for c, k in value["called"].items() if k) or "-")
        for name, value in part["apart"].items()
    )
    print(f"{indent}  apart (not in the figures): {apart}; incorrectly worn unlabelled: {part['unlabelled']}")


def _points(share: float | None, signed: bool = False) -> str:
    """A difference of shares in percentage points: ``4.2 points`` (``+4.2`` when signed)."""
    if share is None:
        return "-"
    return f"{100 * share:+.1f} points" if signed else f"{100 * share:.1f} points"
