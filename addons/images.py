"""ImageAnalysis: score the images a group is shown for nudity, after delivery, and learn.

For a group whose policy has ``content: {images: nudity}``, an allowed image
(JPEG, PNG, WebP, BMP, up to ``schoolgate_image_max_kb``) is handed, as it is
delivered, to a bounded background pool (``proxy.content.images``) running
NudeNet's detector; the response is never held for it. An image whose
detected nudity reaches the group's ``image_threshold`` is appended to the
learned list (``proxy.content.learned``, ``kind: image``, with the page that
showed it from the Referer), which every worker reads: the next request for
that image is refused at ``requestheaders`` by ContentAnalysis, before any
upstream connection, without scoring it again.

Failure policy (written here, beside the code that chooses it): a full pool
(``schoolgate_image_queue`` images waiting) or an image the detector cannot
read lets the image through unscored this time, counted in ``refused`` and
said in the log at most once a minute. Scoring is after delivery by design,
so it never decides the response it sees; holding pupils' images while the
pool is busy would delay every page for a check that only decides the next
request. An image not scored is scored when next fetched with room in the
pool. Each image URL is scored once per worker (a cache of URLs).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addons import facts
from addons.facts import answered, identity_of
from blocklists.normalise import BadURL, normalise_url
from proxy.content.images import IMAGE_TYPES, ImageJob, ImagePool, ImageScore
from proxy.content.learned import LEARNED_FILE, LearnedEntry, append, learned_now

log = logging.getLogger("schoolgate.images")

CACHE_SIZE = 10_000
IMAGE = facts.IMAGE


class ImageAnalysis:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.pool: ImagePool | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._warned = 0.0
        self.learned = 0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_image_workers", int, 1, "Threads scoring images (content: images)."
        )
        loader.add_option(
            "schoolgate_image_queue",
            int,
            32,
            "Images waiting to be scored at most; past it an image passes unscored this time.",
        )
        loader.add_option(
            "schoolgate_image_max_kb", int, 4096, "Larger images are not scored for nudity."
        )

    def configure(self, updated: set[str]) -> None:
        if {"schoolgate_image_workers", "schoolgate_image_queue"} & updated:
            if ctx.options.schoolgate_image_workers < 1 or ctx.options.schoolgate_image_queue < 1:
                raise exceptions.OptionsError(
                    "schoolgate_image_workers and schoolgate_image_queue must be 1 or more"
                )
            if self.pool is not None:
                self.pool.close()
                self.pool = None  # made again, at the new size, for the next image

    def _pool(self) -> ImagePool:
        # Made at the first image (configure() hears only of options that change): it starts
        # no thread and loads no model until then.
        if self.pool is None:
            self.pool = ImagePool(
                ctx.options.schoolgate_image_workers,
                ctx.options.schoolgate_image_queue,
                self._scored,
            )
        return self.pool

    def done(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def response(self, flow: http.HTTPFlow) -> None:
        """Hand a delivered image to the pool; never waits for it."""
        response = flow.response
        if response is None or answered(flow) or response.status_code != 200:
            return
        identity = identity_of(flow)
        group = self.loader.filterset.policy.groups.get(identity.group) if identity else None
        rule = group.content if group is not None else None
        if rule is None or rule.images is None:
            return
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if mime not in IMAGE_TYPES or callable(response.stream):
            return
        data = response.content
        if not data or len(data) > ctx.options.schoolgate_image_max_kb * 1024:
            flow.metadata[IMAGE] = "unscored: too large" if data else "unscored: empty"
            return
        try:
            entry = normalise_url(flow.request.pretty_url).entry
        except BadURL:
            return
        if entry in self._seen or facts.LEARNED_STATE in flow.metadata:
            return  # scored here already, or the learned list knows it (a rejection stands)
        page = flow.request.headers.get("referer")
        if not self._pool().submit(ImageJob(entry, data, page, rule.image_threshold)):
            flow.metadata[IMAGE] = "unscored: pool full"
            self._warn_full()
            return
        self._seen[entry] = None
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
        flow.metadata[IMAGE] = "queued"

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("the image pool is full: images pass unscored until it has room")

    def _scored(self, job: ImageJob, result: ImageScore | None) -> None:
        """In the pool's thread: a high score becomes a learned entry, read by every worker."""
        if result is None:  # unreadable: may be tried again next time
            self._seen.pop(job.entry, None)
            return
        if result.label is None or result.score < job.threshold:
            return
        found = learned_now(job.entry, "adult", result.percent, (result.label,))
        entry = LearnedEntry(
            found.entry, found.category, found.score, found.phrases, found.at,
            kind="image", page=job.page,
        )  # fmt: skip
        append(self.loader.filterset.settings.data_dir / LEARNED_FILE, entry)
        self.learned += 1
