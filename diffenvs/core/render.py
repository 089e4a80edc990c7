"""A tiny headless raster canvas: enough to draw each environment as an RGB array."""

from __future__ import annotations

import numpy as np


class Canvas:
    """RGB canvas in world coordinates: ``xlim``/``ylim`` map onto ``width`` x ``height`` pixels."""

    def __init__(self, width: int, height: int, xlim: tuple[float, float], ylim: tuple[float, float]):
        self.image = np.full((height, width, 3), 255, dtype=np.uint8)
        self.width, self.height = width, height
        self.xlim, self.ylim = xlim, ylim
        rows, cols = np.mgrid[0:height, 0:width]
        self._x = xlim[0] + (cols + 0.5) / width * (xlim[1] - xlim[0])
        self._y = ylim[1] - (rows + 0.5) / height * (ylim[1] - ylim[0])

    @property
    def pixel(self) -> float:
        """World length of one pixel (horizontal)."""
        return (self.xlim[1] - self.xlim[0]) / self.width

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int]) -> None:
        mask = (self._x >= min(x0, x1)) & (self._x <= max(x0, x1)) & (self._y >= min(y0, y1)) & (self._y <= max(y0, y1))
        self.image[mask] = color

    def disc(self, x: float, y: float, radius: float, color: tuple[int, int, int]) -> None:
        self.image[(self._x - x) ** 2 + (self._y - y) ** 2 <= radius**2] = color

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float, color: tuple[int, int, int]) -> None:
        """A segment of the given world ``width``: points within width/2 of it."""
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        s = np.clip(((self._x - x0) * dx + (self._y - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        distance2 = (self._x - (x0 + s * dx)) ** 2 + (self._y - (y0 + s * dy)) ** 2
        self.image[distance2 <= (width / 2) ** 2] = color

    def polyline(self, xs: np.ndarray, ys: np.ndarray, width: float, color: tuple[int, int, int]) -> None:
        for i in range(len(xs) - 1):
            self.line(xs[i], ys[i], xs[i + 1], ys[i + 1], width, color)
