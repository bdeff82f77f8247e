"""Images through the real proxy: scored for nudity after delivery, learned, refused next time.

No explicit picture can be fetched or shipped here, so the "high" picture is a
generated abstract one (tests/fixtures/images/generate.py) that the real
NudeNet model scores 0.73, above the default threshold 0.6 these pupils have,
and a flat picture scores under 0.01. The pipeline is the real one: the proxy delivers
the image, its background pool runs the model, the score goes to the learned
list, and the next request is refused before any upstream connection.
Staff ask for no image analysis.
"""

from __future__ import annotations

import http.server
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from proxy.content.learned import LEARNED_FILE
from tests.integration.harness import (
    PUPIL,
    ROOT,
    STAFF,
    TEST_POLICY,
    Gateway,
    OriginCA,
    serve_origin,
    start_gateway,
    stop_gateway,
    write_config,
)

FIXTURES = ROOT / "tests" / "fixtures" / "images"
THRESHOLD = 0.6  # the default image_threshold
POLICY = TEST_POLICY.replace(
    """  pupil:
    default: acceptable
""",
    """  pupil:
    default: acceptable
    content: {analyse: [pages], images: nudity}
""",
)


def flat_png() -> bytes:
    ok, data = cv2.imencode(".png", np.full((200, 300, 3), (200, 120, 40), np.uint8))
    assert ok
    return bytes(data.tobytes())


@dataclass
class Images:
    port: int
    seen: list[str]

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"


@pytest.fixture(scope="module")
def images(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """An origin serving the generated picture, a flat one and bytes that are no picture."""
    high, flat = (FIXTURES / "high.png").read_bytes(), flat_png()
    bodies = {"high": high, "flat": flat, "broken": b"\x89PNG\r\n\x1a\n" + b"\0" * 200}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.path)
            body = bodies[self.path.strip("/").split("-", 1)[0]]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    cert, key = origin_ca.issue(tmp_path_factory.mktemp("images"), "localhost")
    with serve_origin(Handler, cert, key) as (http_port, _https_port):
        yield Images(http_port, seen)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("images-gw")
    write_config(tmp / "config", tmp / "var", 1, POLICY)
    shutil.copy(ROOT / "config" / "content-phrases.yaml", tmp / "config")
    gateway = start_gateway(tmp, origin_ca)
    yield gateway
    stop_gateway(gateway)


def learned(gw: Gateway) -> dict[str, dict[str, object]]:
    path: Path = gw.data_dir / LEARNED_FILE
    if not path.exists():
        return {}
    return {(e := json.loads(line))["entry"]: e for line in path.read_text().splitlines()}


def wait_learned(gw: Gateway, fragment: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry, found in learned(gw).items():
            if fragment in entry:
                return found
        time.sleep(0.1)
    raise AssertionError(f"nothing learned for {fragment} in {timeout} s")


def test_a_high_scoring_picture_is_delivered_then_learned_then_refused(
    gw: Gateway, images: Images
) -> None:
    """The first request gets the picture (scoring never delays it); the pool learns it; the
    next request is refused and the origin never sees it again."""
    status, _ = gw.get(images.url("/high-1.png"), client=PUPIL,
                       headers={"Referer": "http://localhost/gallery"})  # fmt: skip
    assert status == 200
    found = wait_learned(gw, "/high-1.png")
    assert found["kind"] == "image"
    assert found["category"] == "adult"
    assert int(str(found["score"])) >= THRESHOLD * 100
    assert str(found["phrases"][0]).endswith("_EXPOSED")  # type: ignore[index]
    assert found["page"] == "http://localhost/gallery"
    time.sleep(1.2)  # the learned list is read twice a second by every worker
    for _ in range(3):
        status, body = gw.get(images.url("/high-1.png"), client=PUPIL)
        assert status == 403
        assert "looked like adult content" in body
    assert images.seen.count("/high-1.png") == 1


def test_staff_still_get_a_learned_picture(gw: Gateway, images: Images) -> None:
    """Staff ask for no image analysis: a picture learned for pupils reaches them."""
    gw.get(images.url("/high-2.png"), client=PUPIL)
    wait_learned(gw, "/high-2.png")
    time.sleep(1.2)
    status, _ = gw.get(images.url("/high-2.png"), client=STAFF)
    assert status == 200
    assert images.seen.count("/high-2.png") == 2


@pytest.mark.parametrize("name", ["flat", "broken"])
def test_a_harmless_or_unreadable_picture_is_never_learned(
    gw: Gateway, images: Images, name: str
) -> None:
    """A flat picture scores under the threshold, bytes that are no picture are not scored:
    both keep being delivered, and neither is learned."""
    path = f"/{name}-1.png"
    for _ in range(2):
        status, _ = gw.get(images.url(path), client=PUPIL)
        assert status == 200
    # A later picture being learned shows the pool has finished with this one.
    gw.get(images.url(f"/high-after-{name}.png"), client=PUPIL)
    wait_learned(gw, f"/high-after-{name}.png")
    assert not [entry for entry in learned(gw) if path in entry]
    assert images.seen.count(path) == 2
