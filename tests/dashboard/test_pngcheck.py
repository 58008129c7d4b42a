"""The screenshot checks' PNG reader: every filter type of the format is undone, and what it cannot read is refused
with a reason."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from .pngcheck import _paeth, colours, decode


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filter(ftype: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    """PNG's forward filter ``ftype`` of one row (the inverse of what the reader must undo)."""
    out = bytearray()
    for i, x in enumerate(line):
        left = line[i - bpp] if i >= bpp else 0
        upleft = prev[i - bpp] if i >= bpp else 0
        predictor = [0, left, prev[i], (left + prev[i]) >> 1, _paeth(left, prev[i], upleft)][ftype]
        out.append((x - predictor) & 0xFF)
    return bytes(out)


def write_png(path: Path, rows: list[bytes], width: int, colour_type: int = 2, depth: int = 8,
              interlace: int = 0) -> None:
    bpp = 3 if colour_type == 2 else 4
    raw, prev = bytearray(), bytes(width * bpp)
    for y, line in enumerate(rows):
        ftype = y % 5  # every filter type, in turn
        raw += bytes([ftype]) + _filter(ftype, line, prev, bpp)
        prev = line
    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour_type, 0, 0, interlace)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"tEXt", b"k\x00v")
                     + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b""))


def _image(width: int, height: int, bpp: int) -> list[bytes]:
    return [bytes((x * 37 + y * 91 + c * 53 + (x * y) % 7) & 0xFF for x in range(width) for c in range(bpp))
            for y in range(height)]


@pytest.mark.parametrize(("colour_type", "bpp"), [(2, 3), (6, 4)])
def test_every_filter_type_is_undone(tmp_path: Path, colour_type: int, bpp: int) -> None:
    rows = _image(7, 10, bpp)
    write_png(tmp_path / "x.png", rows, 7, colour_type)
    assert decode(tmp_path / "x.png") == (7, 10, bpp, rows)


def test_colours_are_counted_on_sampled_pixels(tmp_path: Path) -> None:
    red, blue = bytes([255, 0, 0]), bytes([0, 0, 255])
    write_png(tmp_path / "x.png", [red * 2 + blue * 2] * 4, 4)
    assert colours(tmp_path / "x.png") == {(255, 0, 0): 2, (0, 0, 255): 2}


@pytest.mark.parametrize(("data", "message"), [
    (b"GIF89a", "is not a PNG"),
    (b"\x89PNG\r\n\x1a\n" + _chunk(b"IEND", b""), "has no IHDR"),
])
def test_what_is_not_a_png_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(ValueError, match=message):
        decode(tmp_path / "x.png")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"depth": 16}, "depth 16"), ({"colour_type": 3}, "colour type 3"), ({"interlace": 1}, "interlace 1")])
def test_unsupported_pngs_are_refused_with_the_reason(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    write_png(tmp_path / "x.png", _image(2, 2, 3), 2, **kwargs)
    with pytest.raises(ValueError, match=message):
        decode(tmp_path / "x.png")
