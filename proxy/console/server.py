"""Serving the console with uvicorn on ``console_listen``, over HTTPS when ``console_tls``
names a certificate and key (cookies are then ``Secure``)."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from proxy.console.app import create_app
from proxy.filterset import load_filterset
from proxy.settings import Settings


def split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def serve(config_dir: Path, listen: str) -> None:
    settings: Settings = load_filterset(config_dir).settings
    tls = settings.console_tls
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config_dir, secure_cookies=tls is not None)
    host, port = split(listen)
    logging.getLogger("schoolgate.console").info(
        "console on %s://%s:%d", "https" if tls else "http", host, port
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
