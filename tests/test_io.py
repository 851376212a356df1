import struct
import zlib

import cv2
import numpy as np
import pytest

from castinspect.core.io import (
    ImageError,
    expand_paths,
    load_for_model,
    preprocess,
    read_image,
)


def _png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG header claiming an absurd size, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_reads_jpeg_as_gray_uint8(tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 2] = 200
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb)
    img = read_image(tmp_path / "a.jpg")
    assert img.dtype == np.uint8 and img.shape == (40, 50)


@pytest.mark.parametrize("mode", ["gray16", "bgra", "gray1ch"])
def test_odd_modes_become_gray_uint8(mode):
    if mode == "gray16":
        img = np.full((20, 20), 40000, np.uint16)
    elif mode == "bgra":
        img = np.full((20, 20, 4), 128, np.uint8)
    else:
        img = np.full((20, 20, 1), 77, np.uint8)
    out = read_image(_png_bytes(img), name="x.png")
    assert out.dtype == np.uint8 and out.shape == (20, 20)
    assert out.max() > 0


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 30, "cannot decode"),
])
def test_bad_bytes_name_file_and_reason(tmp_path, content, reason):
    f = tmp_path / "bad.jpg"
    f.write_bytes(content)
    with pytest.raises(ImageError) as e:
        read_image(f)
    assert str(f) in str(e.value) and reason in str(e.value)


def test_truncated_jpeg_is_refused_or_gray(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8))
    data = buf.tobytes()
    f = tmp_path / "trunc.jpg"
    f.write_bytes(data[: len(data) // 3])
    # libjpeg may decode a truncated file partially (grey fill); what must never happen is a crash
    # or an exception other than ImageError.
    try:
        img = read_image(f)
        assert img.shape == (200, 200)
    except ImageError as e:
        assert "trunc.jpg" in str(e)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)


def test_decompression_bomb_refused():
    with pytest.raises(ImageError) as e:
        read_image(_bomb_png(100_000, 100_000), name="bomb.png")
    assert "bomb.png" in str(e.value)


def test_tiny_image_refused():
    with pytest.raises(ImageError, match="too small"):
        read_image(_png_bytes(np.zeros((3, 3), np.uint8)))


def test_preprocess_size_and_identity():
    img = np.random.default_rng(1).integers(0, 255, (300, 300), np.uint8)
    assert preprocess(img, 128).shape == (128, 128)
    small = img[:64, :64]
    assert preprocess(small, 64) is small


def test_load_for_model_bytes_equals_path(tmp_path):
    img = np.random.default_rng(2).integers(0, 255, (90, 90), np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), img)
    np.testing.assert_array_equal(load_for_model(tmp_path / "p.png", 48),
                                  load_for_model((tmp_path / "p.png").read_bytes(), 48))


def test_expand_paths_folders_globs_and_missing(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert expand_paths([tmp_path]) == [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    assert expand_paths([str(tmp_path / "*.jpg")]) == [str(tmp_path / "b.jpg")]
    assert expand_paths([str(tmp_path / "missing.jpg")]) == [str(tmp_path / "missing.jpg")]


def test_header_size_reads_the_claimed_frame_before_decoding():
    import cv2
    import numpy as np

    from castinspect.core.io import header_size

    img = np.zeros((37, 53), np.uint8)
    for ext in (".jpg", ".png", ".bmp"):
        ok, buf = cv2.imencode(ext, img)
        assert header_size(buf.tobytes()) == (53, 37), ext
    assert header_size(b"RIFF....WEBP") is None and header_size(b"\xff\xd8\xff") is None


def test_only_regular_files_are_read(tmp_path):
    import os

    from castinspect.core.io import ImageError, read_file
    fifo = tmp_path / "camera.pipe"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", tmp_path):  # would block, never end, is a folder
        with pytest.raises(ImageError) as err:
            read_file(path)
        assert err.value.code == "not_image" and str(path) in str(err.value)
    target = tmp_path / "photo.png"
    target.write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "link.png").symlink_to(target)
    assert read_file(tmp_path / "link.png") == target.read_bytes()  # links to files are followed


@pytest.mark.parametrize("ext, params, channels", [(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], 3),
                                                   (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], 3),
                                                   (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], 4),
                                                   (".tiff", [], 1), (".tiff", [], 3)])
def test_every_format_s_header_size_is_read_before_decoding(ext, params, channels):
    from castinspect.core.io import header_size
    img = np.zeros((37, 53, channels) if channels > 1 else (37, 53), np.uint8)
    assert header_size(cv2.imencode(ext, img, params)[1].tobytes()) == (53, 37)


def test_the_pixel_limit_is_configurable_and_refuses_unread():
    from castinspect.core import io as cio

    png = cv2.imencode(".png", np.zeros((1000, 1200), np.uint8))[1].tobytes()
    saved = cio.MAX_PIXELS
    try:
        cio.set_max_pixels(1_000_000)
        with pytest.raises(ImageError, match="too large") as err:
            cio.read_image(png, "camera.png")
        assert err.value.code == "too_many_pixels"
        cio.set_max_pixels(2_000_000)
        assert cio.read_image(png).shape == (1000, 1200)
        with pytest.raises(ValueError):
            cio.set_max_pixels(10)
    finally:
        cio.set_max_pixels(saved)


def test_a_16_bit_rgba_photo_is_decoded_to_8_bits_by_the_decoder():
    """Alpha dropped and 16 bits reduced while decoding: at most 3 bytes a pixel, never 8."""
    from castinspect.core.io import decode_raw

    rgba = np.zeros((40, 50, 4), np.uint16)
    rgba[..., :3] = 40000
    rgba[..., 3] = 65535
    raw = decode_raw(cv2.imencode(".png", rgba)[1].tobytes(), "rgba.png")
    assert raw.dtype == np.uint8 and raw.shape == (40, 50, 3) and abs(int(raw[0, 0, 0]) - 40000 // 257) <= 1
