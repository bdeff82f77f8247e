"""Images, off the request path: NudeNet's nudity detector in a bounded background pool.

The model is NudeNet's ONNX detector (``320n.onnx``, shipped inside the
``nudenet`` wheel, so it comes from PyPI with the code and nothing is fetched
at run time), run on CPU by onnxruntime with one thread per pool worker, so a
worker never takes more than its core. An image's score is the confidence of
the most certain *exposed* detection (genitalia, breast, buttocks, anus;
covered parts, faces and feet do not count), 0 when there is none.

``ImagePool`` runs the scoring in threads (onnxruntime and OpenCV release the
GIL while they work), never on the event loop. Its queue is bounded: when it
is full, ``submit`` answers ``False`` at once and the image is not scored this
time (the caller counts it). That is the failure policy, chosen from the
issue ("scored after delivery ... never delays a response"): an image is
scored after it was delivered, so holding or refusing it while the pool is
busy would delay or break ordinary pages for every pupil whenever the pool
falls behind, for a check that only ever decides the *next* request. An image
not scored this time is scored the next time it is fetched, when the pool has
room. The model is loaded in the pool's thread on the first image, so a
worker whose groups never ask for images never pays for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("schoolgate.content.images")

# OpenCV decodes up to 2**30 pixels by default: a small file claiming a huge picture (a
# decompression bomb) would take gigabytes. 25 megapixels covers any photo on a web page.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(25_000_000))

# The detector's classes that mean nudity; the others (covered parts, faces, feet) do not.
EXPOSED = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
# The content types the detector can read (OpenCV's decoders): GIF and SVG are not scored.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/bmp"})


@dataclass(frozen=True, slots=True)
class ImageScore:
    """What the detector saw: the highest exposed-part confidence (0..1) and its class."""

    score: float
    label: str | None
    cpu_ms: float

    @property
    def percent(self) -> int:
        return round(self.score * 100)


class NudityModel:
    """NudeNet's detector, with onnxruntime held to one thread (the proxy shares the cores).

    The image is read and scaled by NudeNet's own ``_read_image`` and run through its
    model; the score is the highest exposed-class confidence over all the detector's
    candidate boxes. NudeNet's ``detect`` would drop every box under 0.2 and keep one
    class per box, so a school could not set a threshold below 0.2, and a box whose
    best class is "face" would hide a high "exposed" score beside it.
    """

    def __init__(self) -> None:
        import nudenet.nudenet as nn
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = os.path.join(os.path.dirname(nn.__file__), "320n.onnx")
        self._session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._read: Callable[..., tuple[Any, ...]] = nn._read_image
        labels: list[str] = getattr(nn, "__labels")  # a module-level "private" name
        self._exposed = [(i, name) for i, name in enumerate(labels) if name in EXPOSED]

    def score(self, data: bytes) -> ImageScore:
        """Score one encoded image; ``ValueError`` when it is not an image OpenCV can read."""
        import cv2
        import numpy as np

        start = time.thread_time()
        try:
            blob = self._read(data, 320)[0]
        except (AttributeError, TypeError, cv2.error) as error:  # imdecode refused or gave None
            raise ValueError(f"not a readable image: {error}") from None
        output = self._session.run(None, {self._input: blob})[0]
        rows = np.squeeze(output).T  # one row per candidate box: x, y, w, h, class scores
        best, label = 0.0, None
        for index, name in self._exposed:
            value = float(rows[:, 4 + index].max())
            if value > best:
                best, label = value, name
        cpu_ms = (time.thread_time() - start) * 1000
        return ImageScore(best, label, cpu_ms)


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One delivered image to score, and what to do with a high score."""

    entry: str
    data: bytes
    page: str | None = None
    # The asking group's image_threshold: a score reaching it is learned.
    threshold: float = 1.0


Done = Callable[[ImageJob, ImageScore | None], None]


class ImagePool:
    """``workers`` threads scoring images; at most ``queue`` images waiting or being scored."""

    def __init__(
        self,
        workers: int,
        queue: int,
        done: Done,
        model: Callable[[], NudityModel] = NudityModel,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="images")
        self._limit = queue
        self._pending = 0
        self._lock = threading.Lock()
        self._done = done
        self._make_model = model
        self._model: NudityModel | None = None
        self._model_lock = threading.Lock()
        self.scored = 0
        self.refused = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Images waiting or being scored now."""
        return self._pending

    def submit(self, job: ImageJob) -> bool:
        """Queue ``job``; ``False`` at once (nothing queued) when the pool is full."""
        with self._lock:
            if self._pending >= self._limit:
                self.refused += 1
                return False
            self._pending += 1
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # shut down
            with self._lock:
                self._pending -= 1
            return False
        return True

    def _model_now(self) -> NudityModel:
        with self._model_lock:
            if self._model is None:
                self._model = self._make_model()
            return self._model

    def _run(self, job: ImageJob) -> None:
        result: ImageScore | None = None
        try:
            result = self._model_now().score(job.data)
            self.scored += 1
        except ValueError:
            self.failed += 1  # not an image the detector reads: nothing learned
        except Exception:  # one bad image must not stop the pool
            self.failed += 1
            log.exception("scoring an image failed")
        finally:
            with self._lock:
                self._pending -= 1
        try:
            self._done(job, result)
        except Exception:
            log.exception("recording an image's score failed")

    def close(self, wait: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
