"""Request payloads -> decoded images: multipart uploads, base64 strings, data URLs and (when the
server allows it) http(s) URLs. Decoding and fetching run in worker threads, never on the event loop."""

from __future__ import annotations

import asyncio
import base64
import binascii

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from capfleet.api import CaptionModel, InvalidImageError
from capfleet.serve.errors import ApiError
from capfleet.serve.url_fetch import FetchError, UrlFetcher

# A request's URLs are fetched this many at a time: one after another, 16 slow hosts took 16 timeouts;
# all at once, one request would hold 16 of the 40 threads that decoding and other requests share.
URL_FETCHES_AT_ONCE = 4


def decode_base64(value: str, where: str) -> bytes:
    """Plain base64 or a `data:image/...;base64,` URL -> bytes. Whitespace (`base64` wraps its output at
    76 columns) and missing `=` padding are forgiven; anything else names what is wrong."""
    if value[:5].lower() == "data:":
        header, _, value = value.partition(",")
        if not header.lower().endswith(";base64"):
            raise ApiError(400, f"{where}: only base64 data URLs are supported")
    text = "".join(value.split())
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{where}: not valid base64 image data ({exc})") from None


class ImageReader:
    """Turns what a client sent into RGB images sized for the model, or a 4xx ApiError."""

    def __init__(self, model: CaptionModel, max_images: int, fetcher: UrlFetcher | None):
        self.model = model
        self.max_images = max_images
        self.fetcher = fetcher  # None: URLs are refused

    def _check_count(self, count: int) -> None:
        if count == 0:
            raise ApiError(400, "no image given: send one or more images")
        if count > self.max_images:
            raise ApiError(400, f"{count} images in one request; at most {self.max_images} are allowed")

    async def from_uploads(self, uploads: list) -> list:
        """Multipart `file` fields -> images (errors name the file)."""
        files = [upload for upload in uploads if isinstance(upload, UploadFile)]
        if len(files) != len(uploads):
            raise ApiError(400, "field 'file' must be a file upload")
        self._check_count(len(files))
        datas = [await upload.read() for upload in files]
        names = [upload.filename or f"image {index}" for index, upload in enumerate(files)]
        return await self._decode(datas, names)

    async def from_strings(self, values: list[str], field: str) -> list:
        """base64 / data URLs / http(s) URLs -> images."""
        self._check_count(len(values))
        at_once = asyncio.Semaphore(URL_FETCHES_AT_ONCE)

        async def read(index: int, value: str) -> bytes:
            async with at_once:
                return await self._bytes(value, f"{field}[{index}]")

        outcomes = await asyncio.gather(*(read(index, value) for index, value in enumerate(values)),
                                        return_exceptions=True)  # fmt: skip
        failed = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failed is not None:  # the first in the request's order, whichever failed first
            raise failed
        datas = list(outcomes)
        return await self._decode(datas, [f"{field}[{index}]" for index in range(len(values))])

    async def _bytes(self, value: str, where: str) -> bytes:
        if value[:8].lower().startswith(("http://", "https://")):
            if self.fetcher is None:
                raise ApiError(400, f"{where}: image URLs are off on this server (start it with --allow-urls)")
            try:
                return await run_in_threadpool(self.fetcher.fetch, value)
            except FetchError as exc:
                raise ApiError(400, f"{where}: {exc}") from None
        return decode_base64(value, where)

    async def _decode(self, datas: list[bytes], names: list[str]) -> list:
        try:
            return await run_in_threadpool(self.model.open_images, datas)
        except InvalidImageError as exc:
            raise ApiError(400, f"{names[exc.index]}: {exc.reason}") from None
