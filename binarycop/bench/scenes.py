"""What the loopback cameras of ``bench pipeline`` show: the crowd (the worst case) or a venue.

``crowd``: the bundled clip tiled 2x2 at 1280x720, four face sets of 16 faces each 3.5 s, drifting all the time, with
1.5 s of background between sets (faces in view 57 % of the time, moving whenever they are).

``venue``: what a camera over a counter sees most of the day, at the same size and with the clip's faces at the same
size. A still background with fresh sensor noise in every frame; in each 180-s loop one person stands at the counter
for a minute (swaying a few pixels) while six people walk past, each in view 4 s. Faces are in view a third of the
time, and 7 people pass per loop.

In both, each camera starts at its own point of the loop, as independent cameras do: cameras in step would all be
busy, and all idle, at once. A scene's people per loop and loop length give the people a window of the streams showed
(``shown``): an expectation over the staggered starts, close for many cameras (each camera's own count moves by a
whole face set with where the window falls in its loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from binarycop.democlip import FACE_PX, FPS, GAP_FRAMES, SEGMENT_FRAMES, SEGMENTS, SLOTS, _positions, clip_frames

WIDTH, HEIGHT = 1280, 720
VENUE_SECONDS = 180
STAND = (20.0, 80.0)  # seconds of the loop the person at the counter stays
WALKERS = (22.0, 32.0, 42.0, 52.0, 62.0, 72.0)  # when each passer-by comes into view
WALK_SECONDS = 4.0
WALK_SPEED = 150.0  # px/s: 30 px between frames examined at 5 fps, which the tracker's overlap test follows
NOISE_SIGMA = 3.0
NOISE_FIELDS = 8  # fresh-looking noise: the frames cycle through this many fields (drawn once)


@dataclass
class Scene:
    name: str
    frames: list[bytes]  # JPEGs at 10 fps, looped
    people_per_loop: int

    @property
    def loop_seconds(self) -> float:
        return len(self.frames) / FPS

    def shown(self, cameras: int, seconds: float) -> float:
        """People the streams of ``cameras`` showed in a window of ``seconds``."""
        return cameras * self.people_per_loop * seconds / self.loop_seconds

    def start_frame(self, camera: int) -> int:
        """Where camera number ``camera`` starts in the loop (golden-ratio spacing: spread for any count)."""
        return int((camera * 0.6180339887) % 1 * len(self.frames))


def crowd_scene() -> Scene:
    """The worst case: 16 people every 3.5 s of stream."""
    jpegs = []
    for frame in clip_frames():
        grid = np.vstack([np.hstack([frame, frame[:, ::-1]]), np.hstack([frame[:, ::-1], frame])])
        jpegs.append(_jpeg(grid))
    per_set = 4 * len(SLOTS)
    sets = len(jpegs) // (SEGMENT_FRAMES + GAP_FRAMES)
    return Scene("crowd", jpegs, per_set * sets)


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def clip_faces() -> tuple[np.ndarray, list[np.ndarray]]:
    """The clip's background and its 16 faces (FACE_PX square), cut from the first frame of each face set."""
    frames = clip_frames()
    background = frames[SEGMENT_FRAMES]  # the first frame between two face sets
    faces = []
    for segment in range(SEGMENTS):
        first = segment * (SEGMENT_FRAMES + GAP_FRAMES)
        for x, y in _positions(first):
            faces.append(frames[first][y : y + FACE_PX, x : x + FACE_PX].copy())
    return background, faces


def venue_placements(rng: np.random.Generator) -> list[list[tuple[int, int, int]]]:
    """Per frame of the venue loop, the faces in view as (face number, x, y): the person at the counter is face 0,
    the passers-by faces 1 to 6."""
    walkers = []
    for k, start in enumerate(WALKERS):
        leftwards = k % 2 == 1
        x0 = float(rng.uniform(700, 1100)) if leftwards else float(rng.uniform(40, 440))
        y0 = float(rng.uniform(60, HEIGHT - FACE_PX - 60))
        walkers.append((start, x0, y0, -WALK_SPEED if leftwards else WALK_SPEED))
    frames = []
    for index in range(int(VENUE_SECONDS * FPS)):
        t = index / FPS
        placed = []
        if STAND[0] <= t < STAND[1]:
            placed.append((0, 600 + int(round(3 * np.sin(2 * np.pi * t / 5))), 380))  # swaying a few pixels
        for k, (start, x0, y0, speed) in enumerate(walkers):
            if start <= t < start + WALK_SECONDS:
                placed.append((1 + k, int(x0 + speed * (t - start)), int(y0 + 10 * np.sin(2 * np.pi * (t - start)))))
        frames.append(placed)
    return frames


def venue_scene(seed: int = 0) -> Scene:
    """The venue loop (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    background, faces = clip_faces()
    wide = cv2.resize(background, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
    noise = [rng.normal(0, NOISE_SIGMA, (HEIGHT, WIDTH, 1)).astype(np.float32) for _ in range(NOISE_FIELDS)]
    still = [_jpeg(np.clip(wide + field, 0, 255).astype(np.uint8)) for field in noise]
    cast = [faces[i] for i in rng.permutation(len(faces))[: 1 + len(WALKERS)]]
    jpegs = []
    for index, placed in enumerate(venue_placements(rng)):
        if not placed:
            jpegs.append(still[index % NOISE_FIELDS])  # the same bytes object: memory is the distinct frames only
            continue
        image = wide.copy()
        for face, x, y in placed:
            image[y : y + FACE_PX, x : x + FACE_PX] = cast[face]
        jpegs.append(_jpeg(np.clip(image + noise[index % NOISE_FIELDS], 0, 255).astype(np.uint8)))
    return Scene("venue", jpegs, len(cast))


SCENES = {"crowd": crowd_scene, "venue": venue_scene}
