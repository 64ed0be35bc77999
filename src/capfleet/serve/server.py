"""Run the service under uvicorn: load the models once, then serve until Ctrl-C."""

from __future__ import annotations

import ipaddress
import logging

from capfleet.api import load
from capfleet.serve.app import create_app
from capfleet.serve.settings import ServeSettings

log = logging.getLogger("capfleet")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    captioner: str,
    scorer: str,
    host: str,
    port: int,
    settings: ServeSettings,
    device: str = "auto",
    dtype: str = "auto",
    max_pixels: int = 89_478_485,
) -> None:
    import uvicorn

    settings.validate()
    model = load(captioner, scorer, device=device, dtype=dtype, max_pixels=max_pixels, batch_size=settings.max_batch)
    if not is_loopback(host) and settings.api_key is None:
        log.warning("serving on %s without --api-key: anyone who can reach this address can use the model", host)
    log.info("capfleet serve: captioner %s, scorer %s on %s", model.captioner_name, model.scorer_name, model.device)
    uvicorn.run(create_app(model, settings), host=host, port=port, log_level="info", timeout_keep_alive=5)
