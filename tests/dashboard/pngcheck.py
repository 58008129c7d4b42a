"""Minimal PNG reader (stdlib zlib) for screenshot checks: size and the set of distinct colours."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_SIG = b"\x89PNG\r\n\x1a\n"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _chunks(data: bytes) -> tuple[tuple[int, ...] | None, bytes]:
    """The IHDR fields (None if missing) and the concatenated IDAT data, up to IEND."""
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    return header, bytes(idat)


def _sub(line: bytearray, prev: bytes, bpp: int) -> bytearray:
    for i in range(bpp, len(line)):
        line[i] = (line[i] + line[i - bpp]) & 0xFF
    return line


def _up(line: bytearray, prev: bytes, bpp: int) -> bytearray:
    return bytearray((x + p) & 0xFF for x, p in zip(line, prev, strict=True))


def _average(line: bytearray, prev: bytes, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    return line


def _paeth_row(line: bytearray, prev: bytes, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        upleft = prev[i - bpp] if i >= bpp else 0
        line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
    return line


#: PNG filter type -> how to undo it on one row (type 0, None, leaves the row as is)
_UNFILTER = {1: _sub, 2: _up, 3: _average, 4: _paeth_row}


def decode(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, unfiltered rows) of an 8-bit RGB/RGBA non-interlaced PNG."""
    data = path.read_bytes()
    if not data.startswith(_SIG):
        raise ValueError(f"{path} is not a PNG")
    header, idat = _chunks(data)
    if header is None:
        raise ValueError(f"{path} has no IHDR")
    width, height, depth, color, _, _, interlace = header
    if depth != 8 or color not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {color}, interlace {interlace})")
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        unfilter = _UNFILTER.get(ftype)
        prev = bytes(unfilter(line, prev, bpp) if unfilter else line)
        rows.append(prev)
    return width, height, bpp, rows


def colours(path: Path, step: int = 2) -> dict[tuple[int, ...], int]:
    """Distinct colours (RGB) sampled every ``step`` pixels, with their counts."""
    _, _, bpp, rows = decode(path)
    counts: dict[tuple[int, ...], int] = {}
    for row in rows[::step]:
        for i in range(0, len(row), bpp * step):
            key = (row[i], row[i + 1], row[i + 2])
            counts[key] = counts.get(key, 0) + 1
    return counts
