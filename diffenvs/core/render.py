"""A tiny headless raster canvas: enough to draw each environment as an RGB array (shapes, axes, paths)."""

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

    def to_pixels(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of world points (points outside the canvas are dropped)."""
        cols = np.floor((np.asarray(xs) - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * self.width).astype(np.int64)
        rows = np.floor((self.ylim[1] - np.asarray(ys)) / (self.ylim[1] - self.ylim[0]) * self.height).astype(np.int64)
        inside = (cols >= 0) & (cols < self.width) & (rows >= 0) & (rows < self.height)
        return rows[inside], cols[inside]

    def path(self, xs: np.ndarray, ys: np.ndarray, color: tuple[int, int, int], *, thickness: int = 2) -> None:
        """A path through the points ``(xs, ys)``, ``thickness`` pixels wide (sampled every half pixel along it:
        cheap for thousands of points, where :meth:`polyline` computes every pixel per segment)."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        keep = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[keep], ys[keep]
        if len(xs) == 0:
            return
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(xs), np.diff(ys)))])
        samples = int(min(arc[-1] / (0.5 * self.pixel), 200_000)) + 1
        s = np.linspace(0.0, arc[-1], samples)
        rows, cols = self.to_pixels(np.interp(s, arc, xs), np.interp(s, arc, ys))
        for dr in range(thickness):
            for dc in range(thickness):
                self.image[np.clip(rows + dr, 0, self.height - 1), np.clip(cols + dc, 0, self.width - 1)] = color

    def ring(self, x: float, y: float, radius: float, width: float, color: tuple[int, int, int]) -> None:
        """A circle of the given world ``radius`` and line ``width``."""
        distance = np.sqrt((self._x - x) ** 2 + (self._y - y) ** 2)
        self.image[np.abs(distance - radius) <= width / 2] = color

    def axes(self, spacing: float, color: tuple[int, int, int] = (120, 120, 120)) -> None:
        """The two axes through the origin, two pixels wide, with a tick every ``spacing`` world units and a ring
        at the origin."""
        width, tick = 2 * self.pixel, 6 * self.pixel
        self.line(self.xlim[0], 0.0, self.xlim[1], 0.0, width, color)
        self.line(0.0, self.ylim[0], 0.0, self.ylim[1], width, color)
        for x in np.arange(np.ceil(self.xlim[0] / spacing), np.floor(self.xlim[1] / spacing) + 1) * spacing:
            self.line(x, -tick, x, tick, width, color)
        for y in np.arange(np.ceil(self.ylim[0] / spacing), np.floor(self.ylim[1] / spacing) + 1) * spacing:
            self.line(-tick, y, tick, y, width, color)
        self.ring(0.0, 0.0, 5 * self.pixel, 2 * self.pixel, (0, 0, 0))
