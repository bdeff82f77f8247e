"""The nudity detector and its bounded pool (proxy/content/images.py), with the real model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from proxy.content.images import ImageJob, ImagePool, ImageScore, NudityModel
from proxy.content.learned import LearnedEntry

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "images"
# The default image_threshold, which tests/integration/test_images.py gives pupils.
TEST_THRESHOLD = 0.6


def png(colour: tuple[int, int, int], size: tuple[int, int] = (200, 300)) -> bytes:
    ok, data = cv2.imencode(".png", np.full((*size, 3), colour, np.uint8))
    assert ok
    return bytes(data.tobytes())


@pytest.fixture(scope="module")
def model() -> NudityModel:
    return NudityModel()


def test_a_plain_picture_scores_near_nothing(model: NudityModel) -> None:
    """A flat blue picture is nowhere near any threshold a school would set."""
    result = model.score(png((200, 120, 40)))
    assert result.score < 0.02
    assert result.cpu_ms > 0


def test_the_generated_test_picture_crosses_the_test_threshold(model: NudityModel) -> None:
    """The generated picture (tests/fixtures/images/generate.py) scores over TEST_THRESHOLD and
    the plain one under it, so the integration test's threshold separates them."""
    high = model.score((FIXTURES / "high.png").read_bytes())
    assert high.score >= TEST_THRESHOLD
    assert high.label is not None
    assert high.label.endswith("_EXPOSED")
    assert model.score(png((200, 120, 40))).score < TEST_THRESHOLD


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
def test_bytes_that_are_no_picture_are_a_value_error(model: NudityModel, data: bytes) -> None:
    """What OpenCV cannot decode is refused with ValueError (nothing is learned from it)."""
    with pytest.raises(ValueError, match="not a readable image"):
        model.score(data)


class Blocking:
    """A model that waits until released: the pool's threads stay busy meanwhile."""

    def __init__(self, release: threading.Event, fail: bool = False) -> None:
        self.release, self.fail = release, fail

    def score(self, data: bytes) -> ImageScore:
        self.release.wait(30)
        if self.fail:
            raise RuntimeError("model broke")
        return ImageScore(0.9, "BUTTOCKS_EXPOSED", 1.0)


def test_a_full_pool_refuses_at_once_and_takes_again_when_it_has_room() -> None:
    """With one worker and room for two, a third image is refused without waiting; once the
    two are scored the pool takes images again, and every scored one reaches ``done``."""
    release = threading.Event()
    results: list[tuple[str, ImageScore | None]] = []
    finished = threading.Semaphore(0)

    def done(job: ImageJob, result: ImageScore | None) -> None:
        results.append((job.entry, result))
        finished.release()

    pool = ImagePool(1, 2, done, model=lambda: Blocking(release))  # type: ignore[arg-type,return-value]
    try:
        assert pool.submit(ImageJob("a/1", b"x"))
        assert pool.submit(ImageJob("a/2", b"x"))
        assert not pool.submit(ImageJob("a/3", b"x"))
        assert pool.refused == 1
        release.set()
        assert finished.acquire(timeout=30)
        assert finished.acquire(timeout=30)
        assert sorted(entry for entry, _ in results) == ["a/1", "a/2"]
        assert pool.submit(ImageJob("a/4", b"x"))
        assert finished.acquire(timeout=30)
        assert pool.scored == 3
    finally:
        pool.close(wait=True)


def test_a_model_that_fails_leaves_the_pool_working() -> None:
    """An exception while scoring is counted and reported as no result; the pool goes on."""
    release = threading.Event()
    release.set()
    results: list[ImageScore | None] = []
    finished = threading.Semaphore(0)

    def done(job: ImageJob, result: ImageScore | None) -> None:
        results.append(result)
        finished.release()

    pool = ImagePool(1, 4, done, model=lambda: Blocking(release, fail=True))  # type: ignore[arg-type,return-value]
    try:
        assert pool.submit(ImageJob("b/1", b"x"))
        assert pool.submit(ImageJob("b/2", b"x"))
        assert finished.acquire(timeout=30)
        assert finished.acquire(timeout=30)
        assert results == [None, None]
        assert pool.failed == 2
        assert pool.pending == 0
    finally:
        pool.close(wait=True)


def test_an_image_entry_keeps_its_kind_and_page_and_old_lines_read_as_text() -> None:
    """Learned image entries round-trip through the file; lines written before images existed
    are text entries."""
    entry = LearnedEntry("example.org/a.png", "adult", 87, ("BUTTOCKS_EXPOSED",), "t",
                         kind="image", page="http://example.org/")  # fmt: skip
    assert LearnedEntry.from_json(entry.to_json()) == entry
    old = LearnedEntry("example.org/p", "adult", 120, ("x",), "t")
    assert "kind" not in old.to_json()
    assert LearnedEntry.from_json(old.to_json()).kind == "text"


def test_a_picture_claiming_too_many_pixels_is_refused() -> None:
    """A 35 KB PNG of 5200x5200 pixels (a decompression bomb in miniature) is refused before it
    is decoded: importing proxy.content.images holds OpenCV to 25 megapixels. OpenCV reads the
    limit when it is imported, so this runs in a fresh interpreter, as the proxy starts."""
    script = (
        "from proxy.content.images import NudityModel\n"
        "import cv2, numpy as np\n"
        "_ok, data = cv2.imencode('.png', np.zeros((5200, 5200), np.uint8))\n"
        "try:\n"
        "    NudityModel().score(data.tobytes())\n"
        "except ValueError:\n"
        "    print('refused')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.stdout.strip() == "refused", done.stderr
