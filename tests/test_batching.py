"""Crops from concurrent frames share one classifier call, and every frame gets its own classes back."""

from __future__ import annotations

import asyncio

import numpy as np

from accel import make_classifier
from binarycop.pipeline import SharedClassifier


def test_concurrent_frames_are_batched_and_answered_in_order():
    engine = make_classifier("cpu", "n-cnv")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (3, 1, 5, 2, 4)]

    async def scenario():
        shared = SharedClassifier(engine, max_batch=64, max_wait_ms=50)
        try:
            results = await asyncio.gather(*[shared.classify(crops) for crops in frames])
        finally:
            shared.close()
        return results, shared.calls

    results, calls = asyncio.run(scenario())
    assert calls == 1  # five frames, one call
    for crops, classes in zip(frames, results):
        np.testing.assert_array_equal(classes, engine.classify(crops))


def test_a_full_batch_goes_without_waiting_and_the_rest_follows():
    engine = make_classifier("cpu", "n-cnv")
    frames = [np.random.default_rng(i).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for i in range(6)]

    async def scenario():
        shared = SharedClassifier(engine, max_batch=8, max_wait_ms=10_000)  # only the size can close a batch
        try:
            results = await asyncio.wait_for(asyncio.gather(*[shared.classify(c) for c in frames]), 5)
        finally:
            shared.close()
        return results, shared.calls

    results, calls = asyncio.run(scenario())
    assert calls == 3  # 24 crops in batches of 8: back-pressure held the rest until there was room
    for crops, classes in zip(frames, results):
        np.testing.assert_array_equal(classes, engine.classify(crops))


def test_no_waiting_once_every_camera_has_a_frame_in():
    """With the callers known, a batch closes as soon as each has a call waiting, not after max_wait."""
    import time

    engine = make_classifier("cpu", "n-cnv")
    frames = [np.random.default_rng(i).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for i in range(3)]

    async def scenario():
        shared = SharedClassifier(engine, max_batch=256, max_wait_ms=5_000)
        shared.expect_callers(3)
        try:
            started = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*[shared.classify(c) for c in frames]), 4)
            return time.monotonic() - started, shared.calls
        finally:
            shared.close()

    elapsed, calls = asyncio.run(scenario())
    assert calls == 1 and elapsed < 2
