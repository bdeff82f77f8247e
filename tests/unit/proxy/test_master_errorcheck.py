"""The start-up error check: errors before Schoolgate's start-up stop the proxy, later ones not."""

from __future__ import annotations

import logging

from mitmproxy.test import taddons

from proxy.master import StartupErrorCheck


def test_errors_count_until_running_and_not_after() -> None:
    check = StartupErrorCheck()
    try:
        with taddons.context(check) as tctx:
            assert tctx.master.addons.get("errorcheck") is check  # the master finds it
            logging.getLogger("test").error("cannot listen on 127.0.0.1:8080")
            assert len(check.logger.has_errored) == 1
            check.running()
            logging.getLogger("test").error("policy.yaml not reloaded, keeping the last good")
            assert len(check.logger.has_errored) == 1
    finally:
        check.finish()
