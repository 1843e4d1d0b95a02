"""iotile-s3image-{stage}: JPEG renditions of each image uploaded under INCOMING_PREFIX of the media bucket.

`{stage}/incoming/<uuid>/original.png` gives `{stage}/images/<uuid>/tiny.jpg`, `small.jpg` and
`medium.jpg` (IMAGE_SIZES: the longest edge in pixels; a smaller image is never enlarged), turned
upright by its EXIF orientation, without its metadata. A file that is not a JPEG, PNG, GIF or WebP
image, is larger than MAX_IMAGE_BYTES or has more than MAX_IMAGE_PIXELS pixels (a decompression
bomb) is refused: logged, nothing written, the upload left in place."""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import warnings
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
JPEG_QUALITY = 85
DEFAULT_SIZES = '{"tiny": 64, "small": 256, "medium": 800}'


class Refused(ValueError):
    """The upload is not turned into renditions; it stays where it is."""


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service)


def resize(event: Any, context: Any) -> dict:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        logger.error("s3image: no S3 records in the event")
        return {"statusCode": 400, "results": [], "body": "no S3 records in the event"}
    results = [resize_record(record) for record in records]
    status = 200 if all("error" not in result for result in results) else 400
    return {"statusCode": status, "results": results}


def resize_record(record: Any) -> dict:
    try:
        bucket, key = record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError):
        logger.error("s3image: a record without s3.bucket.name and s3.object.key")
        return {"error": "not an S3 record"}
    try:
        written = write_renditions(bucket, key)
    except Refused as error:
        logger.error("s3image: refused s3://%s/%s: %s", bucket, key, error)
        return {"bucket": bucket, "key": key, "error": str(error)}
    logger.info("s3image: s3://%s/%s -> %s", bucket, key, ", ".join(written))
    return {"bucket": bucket, "key": key, "renditions": written}


def write_renditions(bucket: str, key: str) -> list[str]:
    folder, wanted = rendition_folder(key), sizes()
    image = open_image(read_upload(bucket, key), max(wanted.values()))
    try:
        made = renditions(image, wanted)
    except (OSError, ValueError) as error:
        raise Refused(f"cannot convert it to JPEG: {error}") from None
    written = []
    for name, data in made:
        target = f"{folder}{name}.jpg"
        client("s3").put_object(Bucket=bucket, Key=target, Body=data, ContentType="image/jpeg")
        written.append(target)
    return written


def rendition_folder(key: str) -> str:
    """`<incoming>/<uuid>/original.jpg` -> `<images>/<uuid>/`; `<incoming>/photo.jpg` -> `<images>/photo/`."""
    incoming, images = os.environ["INCOMING_PREFIX"], os.environ["IMAGES_PREFIX"]
    if not key.startswith(incoming):
        raise Refused(f"not under {incoming}")
    folder, _, filename = key[len(incoming) :].rpartition("/")
    stem = filename.rsplit(".", 1)[0]
    if not (folder or stem):
        raise Refused("no file name")
    return f"{images}{folder or stem}/"


def read_upload(bucket: str, key: str) -> bytes:
    limit = int(os.environ.get("MAX_IMAGE_BYTES", "20971520"))
    try:
        answer = client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        raise Refused(f"cannot read it: {error.response['Error'].get('Code')}") from None
    if answer["ContentLength"] > limit:
        answer["Body"].close()
        raise Refused(f"{answer['ContentLength']} bytes, more than MAX_IMAGE_BYTES ({limit})")
    return answer["Body"].read()


def sizes() -> dict[str, int]:
    parsed = json.loads(os.environ.get("IMAGE_SIZES") or DEFAULT_SIZES)
    if not (isinstance(parsed, dict) and parsed and all(type(v) is int and v > 0 for v in parsed.values())):
        raise ValueError(f"IMAGE_SIZES must map names to positive pixel sizes, got {parsed!r}")
    return parsed


def open_image(data: bytes, largest: int) -> Image.Image:
    """Decode the image, refusing anything but the allowed formats and more than MAX_IMAGE_PIXELS:
    Pillow checks the size the header declares when opening, before decoding; its warning (above
    the limit) is an error here like its error (above twice the limit)."""
    max_pixels = int(os.environ.get("MAX_IMAGE_PIXELS", "40000000"))
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.draft("RGB", (largest, largest))  # JPEG only: decode at a reduced scale when it can
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise Refused(f"decompression bomb, more than MAX_IMAGE_PIXELS ({max_pixels}): {error}") from None
        except UnidentifiedImageError:
            raise Refused(f"not a {', '.join(FORMATS)} image") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise Refused(f"a broken image: {error}") from None
    return image


def renditions(image: Image.Image, wanted: dict[str, int]) -> list[tuple[str, bytes]]:
    """Each rendition as JPEG bytes, largest first, each made from the one before (faster, same look)."""
    current = flatten(ImageOps.exif_transpose(image))
    made = []
    for name, size in sorted(wanted.items(), key=lambda item: -item[1]):
        current = current.copy()
        current.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        current.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        made.append((name, buffer.getvalue()))
    return made


def flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency composed onto white, palettes and greyscale expanded."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")
