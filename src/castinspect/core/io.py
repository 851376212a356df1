"""The project's one image decoder and its one preprocessing step.

``read_image`` turns a file or bytes into a grayscale uint8 array or raises ``ImageError`` naming
the file and the reason. ``preprocess`` resizes it to the model's input size. Training, evaluation,
prediction and export all go through these two functions, so the model never sees pixels that were
prepared differently from the ones it learned on.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

# Frames whose header claims more pixels are refused before any memory is allocated for them (a
# decompression bomb): 50 MP is above every inspection camera's sensor we know of. Configurable
# (set_max_pixels, CASTINSPECT_MAX_PIXELS) up to OpenCV's own limit, a backstop it reads once.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS = int(os.environ.get("CASTINSPECT_MAX_PIXELS", DEFAULT_MAX_PIXELS))
OPENCV_MAX_PIXELS = 4 * DEFAULT_MAX_PIXELS
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_SIDE = 8

# Magic numbers of the formats OpenCV decodes here: the type comes from the content, not the name.
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"RIFF", "webp"),
)

cv2.setNumThreads(1)  # parallelism comes from our own workers; OpenCV's pool only adds contention


class ImageError(ValueError):
    """A file that cannot be judged; the message names it and says why. ``code`` is the kind of
    problem for programs (the server maps it to an HTTP status): missing, empty, too_large,
    not_image, corrupt, too_many_pixels, too_small or unsupported."""

    def __init__(self, source: str, reason: str, code: str = "corrupt") -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.code = code


def set_max_pixels(pixels: int) -> None:
    """The largest frame (width x height) a photo may have; larger ones are refused unread."""
    global MAX_PIXELS
    if not MIN_SIDE * MIN_SIDE <= pixels <= OPENCV_MAX_PIXELS:
        raise ValueError(f"the pixel limit must lie between {MIN_SIDE * MIN_SIDE} and {OPENCV_MAX_PIXELS}")
    MAX_PIXELS = int(pixels)
    os.environ["CASTINSPECT_MAX_PIXELS"] = str(MAX_PIXELS)  # and in worker processes started later


def sniff_format(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def read_image(src: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Decode a photo to a 2-D grayscale uint8 array.

    ``src`` is a path or the file's bytes; ``name`` labels bytes in error messages. Colour, 16-bit,
    alpha and palette images are all reduced to 8-bit gray (the casting photos are gray already).
    """
    return read_photo(src, name)[0]


def read_photo(src: str | os.PathLike | bytes, name: str | None = None) -> tuple[np.ndarray, float]:
    """``read_image``'s grey photo and how coloured the frame was (``colourfulness``), for the
    image-quality checks: a colour photo where the training photos were grey is not what the
    model learnt from, though its grey version may look plausible."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        raw = decode_raw(bytes(src), label)
    else:
        label = name or str(src)
        raw = decode_raw(read_file(src, label), label)
    return to_gray_uint8(raw, label), colourfulness(raw)


def colourfulness(img: np.ndarray) -> float:
    """Mean spread between a pixel's colour channels (max - min, in 8-bit levels) over every
    fourth pixel each way; 0 for a grey frame, a few levels for a grey scene in a colour JPEG."""
    if img.ndim != 3 or img.shape[2] < 3:
        return 0.0
    sub = img[::4, ::4, :3].astype(np.float32)
    if img.dtype == np.uint16:
        sub /= 257.0
    elif img.dtype in (np.float32, np.float64):
        sub *= 255.0 if img.max() <= 1.0 else 1.0
    return float((sub.max(axis=2) - sub.min(axis=2)).mean())


def read_file(path: str | os.PathLike, label: str | None = None) -> bytes:
    """A photo file's bytes, or an ImageError naming it: missing, a directory or anything but a
    regular file (a FIFO would block, a device never end), unreadable, too large. Symbolic links
    are followed."""
    label = label or str(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(label, "is a directory, not an image", "not_image")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(label, "not a regular file (a device, FIFO or socket)", "not_image")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(label, f"file too large ({info.st_size} bytes > {MAX_FILE_BYTES})", "too_large")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # at most the limit, whatever the file does meanwhile
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(label, f"file too large (> {MAX_FILE_BYTES} bytes)", "too_large")
        return data
    except FileNotFoundError:
        raise ImageError(label, "no such file", "missing") from None
    except IsADirectoryError:
        raise ImageError(label, "is a directory, not an image", "not_image") from None
    except PermissionError:
        raise ImageError(label, "permission denied", "missing") from None
    except OSError as exc:  # an I/O error, a name too long, ...: this file, not the batch
        raise ImageError(label, f"cannot read ({exc.strerror or exc})", "missing") from None


def decode_bytes(data: bytes, label: str) -> np.ndarray:
    return to_gray_uint8(decode_raw(data, label), label)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header claims them, for PNG, JPEG, BMP, WebP and TIFF; None
    when not found (a header too damaged to read: the decoder then says why)."""
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if data.startswith(b"\x89PNG") and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"BM") and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), \
            abs(int.from_bytes(data[22:26], "little", signed=True))
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):  # walk the JPEG segments to the first start-of-frame marker
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: the canvas size, 24 bits each, minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first image directory."""
    order = "little" if data[:2] == b"II" else "big"
    offset = int.from_bytes(data[4:8], order)
    if offset + 2 > len(data):
        return None
    found: dict[int, int] = {}
    for k in range(int.from_bytes(data[offset:offset + 2], order)):
        entry = data[offset + 2 + 12 * k:offset + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, kind = int.from_bytes(entry[0:2], order), int.from_bytes(entry[2:4], order)
        if tag in (256, 257):  # SHORT (3) or LONG (4), the value in the entry itself
            found[tag] = int.from_bytes(entry[8:10] if kind == 3 else entry[8:12], order)
    return (found[256], found[257]) if len(found) == 2 else None


def decode_raw(data: bytes, label: str) -> np.ndarray:
    """The frame as 8-bit grey, or 8-bit colour where it is coloured, after the content and size
    checks. The decoder itself drops alpha and reduces 16 bits to 8 (IMREAD_ANYCOLOR): a frame
    never costs more than 3 bytes a pixel, however it was stored."""
    if not data:
        raise ImageError(label, "empty file", "empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(label, f"file too large ({len(data)} bytes > {MAX_FILE_BYTES})", "too_large")
    if sniff_format(data) is None:
        raise ImageError(label, "not an image (unrecognised content; JPEG, PNG, BMP, TIFF or WebP expected)",
                         "not_image")
    claimed = header_size(data)
    if claimed and claimed[0] * claimed[1] > MAX_PIXELS:
        # Refused before decoding: a small file can claim a frame of gigabytes (a decompression bomb).
        raise ImageError(label, f"image dimensions too large ({claimed[0]}x{claimed[1]} pixels "
                                f"> {MAX_PIXELS})", "too_many_pixels")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:
        raise ImageError(label, f"cannot decode image ({_first_line(exc)})") from None
    if img is None:
        raise ImageError(label, "cannot decode image (corrupt, truncated or unsupported)")
    return img


def to_gray_uint8(img: np.ndarray, label: str = "<array>") -> np.ndarray:
    """Reduce any decoded frame (gray, BGR, BGRA, 16-bit, float) to 2-D uint8 gray."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            raise ImageError(label, f"unsupported channel count {img.shape[2]}", "unsupported")
    if img.ndim != 2:
        raise ImageError(label, f"unsupported image shape {img.shape}", "unsupported")
    h, w = img.shape
    if min(h, w) < MIN_SIDE:
        raise ImageError(label, f"image too small ({w}x{h}; at least {MIN_SIDE}x{MIN_SIDE})", "too_small")
    if h * w > MAX_PIXELS:
        raise ImageError(label, f"image dimensions too large ({w}x{h} pixels > {MAX_PIXELS})", "too_many_pixels")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0 if img.max() <= 1.0 else img, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(label, f"unsupported pixel type {img.dtype}", "unsupported")
    return np.ascontiguousarray(img)


def preprocess(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a grayscale photo to the model's square input (uint8, size x size).

    INTER_AREA averages the source pixels under each output pixel, so a small pit is shrunk, not
    skipped, whatever the camera's resolution.
    """
    if gray.shape == (size, size):
        return gray
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)


def load_for_model(src: str | os.PathLike | bytes, size: int, name: str | None = None) -> np.ndarray:
    """``read_image`` then ``preprocess``: what a model of input ``size`` judges."""
    return preprocess(read_image(src, name), size)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def expand_paths(inputs: Iterable[str | os.PathLike], recursive: bool = False) -> list[str]:
    """Files, folders (their images, sorted; with ``recursive`` those of every sub-folder too) and
    globs, in the order given.

    A name that matches nothing is kept as given so the caller reports it as a missing file
    rather than silently dropping it.
    """
    out: list[str] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            out += folder_images(p, recursive)
        elif any(ch in text for ch in "*?[") and not p.exists():
            matches = sorted(str(m) for m in Path().glob(text)) if not p.is_absolute() else \
                sorted(str(m) for m in Path(p.anchor).glob(str(p.relative_to(p.anchor))))
            out += matches or [text]
        else:
            out.append(text)
    return out


def folder_images(folder: Path, recursive: bool = False) -> list[str]:
    """The image files in ``folder`` (and, with ``recursive``, below it), sorted by path."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(f) for f in files if f.is_file() and is_image_name(f)
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))
