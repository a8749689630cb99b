"""A figure as PNG bytes, and a PNG's size: what the report files embed and write."""

from __future__ import annotations

import io
import struct

from matplotlib.figure import Figure

#: Resolution of the reports' figures.
FIGURE_DPI = 160


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return 0, 0
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def figure_png(figure: Figure, dpi: int = FIGURE_DPI) -> bytes:
    """A figure as PNG bytes (no metadata, white background)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()

