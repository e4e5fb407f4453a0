"""People, not face-frames: the server's detector, classifier and tracker over clips whose people are known (the demo
clip, and a clip with people who linger built from the shared data), against their truth."""

from __future__ import annotations

import json

from binarycop.democlip import CLIP, expected_people
from binarycop.lingerclip import build_lingering, demo_truth, measure


def test_the_demo_clip_counts_its_people_exactly_and_says_so_in_its_truth():
    truth = demo_truth()
    assert len(truth["people"]) == sum(expected_people().values()) == 16  # 4 face sets x 4 places
    figures = measure(CLIP, truth)
    assert figures["people_counted"] == figures["tracks_matched"] == 16 and figures["tracks_of_no_person"] == 0
    assert figures["compliance_people_counted"] == figures["compliance_true"] == 0.25
    assert figures["right_voted_all_frames"] == 1.0  # the clip is built so that every frame reads right


def test_with_people_who_linger_people_keep_to_the_truth_where_faces_per_frame_do_not(shared_data, tmp_path):
    """Those who stay wear the mask wrongly more often: counted per frame they outweigh those passing by, counted as
    people they do not. A class voted over all a person's frames is right at least as often as one frame."""
    clip, truth_path = build_lingering(shared_data, tmp_path, seconds=90, seed=1)
    truth = json.loads(truth_path.read_text())
    stays = [p["end"] - p["first"] for p in truth["people"]]
    assert max(stays) >= 20 * truth["fps"] and min(stays) <= 4 * truth["fps"]  # some linger, some pass
    figures = measure(clip, truth)
    assert abs(figures["people_counted"] - figures["people_true"]) <= 0.1 * figures["people_true"]
    people_error = abs(figures["compliance_people_counted"] - figures["compliance_true"])
    faces_error = abs(figures["compliance_faces_per_frame"] - figures["compliance_true"])
    assert people_error < 0.1 < faces_error
    assert figures["right_voted_all_frames"] >= figures["right_single_frame"]
