"""ImageAnalysis in mitmproxy's test context: images go to the pool, never wait for it, and a
full pool or a learned entry leaves the image alone."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from addons import facts
from addons.content import ContentAnalysis
from addons.identify import Identify
from addons.images import IMAGE, ImageAnalysis
from addons.metrics import Metrics
from blocklists.index import IndexBuilder
from proxy.content.images import ImagePool, ImageScore
from proxy.filterset import Filterset
from proxy.policy import parse_policy
from proxy.settings import Settings, Source
from tests.chain import one, running

ROOT = Path(__file__).resolve().parents[3]
PUPIL, STAFF = "10.10.0.9", "10.20.0.5"
POLICY = """\
school: Unit School
identity:
  default_group: staff
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
groups:
  pupil:
    default: acceptable
    content: {analyse: [pages], images: nudity}
  staff:
    default: acceptable
"""


class Held:
    """A model that waits until released, so the pool stays busy."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def score(self, data: bytes) -> ImageScore:
        self.release.wait(30)
        return ImageScore(0.0, None, 1.0)


@pytest.fixture
def images(tmp_path: Path) -> Iterator[tuple[Identify, ImageAnalysis, threading.Event, Metrics]]:
    settings = Settings(
        data_dir=tmp_path / "var", sources={"ut1": Source(path=tmp_path / "none", format="ut1")}
    )
    shutil.copy(ROOT / "config" / "content-phrases.yaml", tmp_path)
    policy = parse_policy(POLICY, tmp_path / "policy.yaml")
    filterset = Filterset.build(settings, policy, IndexBuilder().freeze())
    release = threading.Event()
    kinds = (Identify, ContentAnalysis, ImageAnalysis, Metrics)
    with running(tmp_path, filterset, *kinds) as loaded:
        addon = one(loaded, ImageAnalysis)
        assert addon.pool is None  # made at the first image
        addon.pool = ImagePool(1, 2, addon._scored, model=lambda: Held(release))  # type: ignore[arg-type,return-value]
        yield one(loaded, Identify), addon, release, one(loaded, Metrics)
        release.set()


def image_flow(identify: Identify, path: str, client: str = PUPIL) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.peername = (client, 50000)
    flow.request.url = f"http://pictures.example{path}"
    identify.requestheaders(flow)
    flow.response = tutils.tresp(content=b"\x89PNG picture bytes")
    flow.response.headers["content-type"] = "image/png"
    return flow


def test_images_queue_until_the_pool_is_full_then_pass_unscored(
    images: tuple[Identify, ImageAnalysis, threading.Event, Metrics],
) -> None:
    """With one busy worker and room for two, the third image is passed on unscored at once;
    none is held or changed."""
    identify, addon, _release, metrics = images
    outcomes = []
    for n in range(3):
        flow = image_flow(identify, f"/{n}.png")
        addon.response(flow)
        metrics.response(flow)
        assert flow.response is not None
        assert flow.response.status_code == 200
        outcomes.append(flow.metadata.get(IMAGE))
    assert outcomes == ["queued", "queued", "unscored: pool full"]
    registry = metrics.metrics.registry
    counted = {
        outcome: registry.get_sample_value("schoolgate_images_total", {"outcome": outcome})
        for outcome in ("queued", "pool_full")
    }
    assert counted == {"queued": 2.0, "pool_full": 1.0}


def test_only_groups_that_ask_and_only_pictures_are_scored(
    images: tuple[Identify, ImageAnalysis, threading.Event, Metrics],
) -> None:
    """Staff ask for no image analysis; a GIF is not a type the detector reads."""
    identify, addon, _release, _metrics = images
    staff = image_flow(identify, "/staff.png", STAFF)
    addon.response(staff)
    gif = image_flow(identify, "/a.gif")
    assert gif.response is not None
    gif.response.headers["content-type"] = "image/gif"
    addon.response(gif)
    assert IMAGE not in staff.metadata
    assert IMAGE not in gif.metadata


def test_an_image_the_learned_list_knows_is_not_scored_again(
    images: tuple[Identify, ImageAnalysis, threading.Event, Metrics],
) -> None:
    """A rejected image (the technician opened it) is never re-scored and re-learned."""
    identify, addon, _release, _metrics = images
    flow = image_flow(identify, "/rejected.png")
    flow.metadata[facts.LEARNED_STATE] = "rejected"
    addon.response(flow)
    assert IMAGE not in flow.metadata
