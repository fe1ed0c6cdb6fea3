"""Camera lenses of real captures: intrinsics plus distortion in COLMAP's model names.

Pixels follow the package convention (and COLMAP's): pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``,
so ``cx, cy`` of a centred principal point are ``width / 2, height / 2``. OpenCV puts pixel centres at
integers; `opencv_K` shifts by half a pixel. Distortion coefficients are kept in OpenCV's order:
perspective models ``(k1, k2, p1, p2[, k3])``, the fisheye model ``(k1, k2, k3, k4)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Lens", "SUPPORTED_MODELS", "UnsupportedLens"]

# COLMAP camera models this package undistorts; any other model is refused (never ignored).
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
_N_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "OPENCV_FISHEYE": 8}


class UnsupportedLens(ValueError):
    """A camera model or parameter list this package cannot use (the loader names the file)."""


@dataclass(frozen=True)
class Lens:
    """One camera: ``model`` (a COLMAP name in SUPPORTED_MODELS), image size ``width x height`` (pixels),
    focal lengths and principal point ``fx, fy, cx, cy`` (pixels) and ``dist`` (OpenCV order, see module)."""

    model: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.model not in SUPPORTED_MODELS:
            raise UnsupportedLens(f"camera model {self.model!r} is not supported "
                                  f"(supported: {', '.join(SUPPORTED_MODELS)})")
        values = (self.fx, self.fy, self.cx, self.cy, *self.dist)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise UnsupportedLens(f"{self.model} camera has a non-finite parameter")
        if not (self.fx > 0 and self.fy > 0):
            raise UnsupportedLens(f"focal length must be positive, got fx={self.fx:g} fy={self.fy:g}")
        if self.width < 1 or self.height < 1:
            raise UnsupportedLens(f"image size must be positive, got {self.width}x{self.height}")
        want = 4 if self.is_fisheye else (4, 5)
        if self.dist and len(self.dist) not in ((want,) if isinstance(want, int) else want):
            raise UnsupportedLens(f"{self.model} camera needs {want} distortion coefficients, got {len(self.dist)}")

    @property
    def is_fisheye(self) -> bool:
        return self.model == "OPENCV_FISHEYE"

    @property
    def is_distorted(self) -> bool:
        """True when any distortion coefficient is non-zero (undistortion is needed)."""
        return any(v != 0.0 for v in self.dist)

    def opencv_K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix in OpenCV's pixel convention (pixel centres at integers)."""
        return np.array([[self.fx, 0.0, self.cx - 0.5], [0.0, self.fy, self.cy - 0.5], [0.0, 0.0, 1.0]])

    def opencv_dist(self) -> np.ndarray:
        """Distortion coefficients as OpenCV wants them (4 or 5 for perspective, 4 for fisheye)."""
        return np.asarray(list(self.dist) + [0.0] * max(0, 4 - len(self.dist)), dtype=np.float64)

    @classmethod
    def from_colmap(cls, model: str, width: int, height: int, params: Sequence[float]) -> Lens:
        """The lens of a COLMAP camera (``params`` in COLMAP's order for ``model``)."""
        if model not in _N_PARAMS:
            raise UnsupportedLens(f"camera model {model!r} is not supported (supported: {', '.join(SUPPORTED_MODELS)})")
        p = [float(v) for v in params]
        if len(p) != _N_PARAMS[model]:
            raise UnsupportedLens(f"{model} camera needs {_N_PARAMS[model]} parameters, got {len(p)}")
        if model == "SIMPLE_PINHOLE":
            return cls(model, width, height, p[0], p[0], p[1], p[2])
        if model == "PINHOLE":
            return cls(model, width, height, *p)
        if model == "SIMPLE_RADIAL":
            return cls(model, width, height, p[0], p[0], p[1], p[2], (p[3], 0.0, 0.0, 0.0))
        if model == "RADIAL":
            return cls(model, width, height, p[0], p[0], p[1], p[2], (p[3], p[4], 0.0, 0.0))
        return cls(model, width, height, p[0], p[1], p[2], p[3], tuple(p[4:8]))

    def to_colmap(self) -> tuple[str, list[float]]:
        """(model, params) in COLMAP's order, the inverse of `from_colmap`; a non-zero k3 is refused
        (COLMAP's OPENCV model has no slot for it)."""
        d = list(self.dist) + [0.0] * (4 - len(self.dist))
        if len(d) == 5 and d[4] != 0.0:
            raise UnsupportedLens("COLMAP's OPENCV model has no k3; this lens cannot be written as COLMAP")
        if self.model == "SIMPLE_PINHOLE":
            return self.model, [self.fx, self.cx, self.cy]
        if self.model == "PINHOLE":
            return self.model, [self.fx, self.fy, self.cx, self.cy]
        if self.model == "SIMPLE_RADIAL":
            return self.model, [self.fx, self.cx, self.cy, d[0]]
        if self.model == "RADIAL":
            return self.model, [self.fx, self.cx, self.cy, d[0], d[1]]
        return self.model, [self.fx, self.fy, self.cx, self.cy, *d[:4]]

    def scaled(self, sx: float, sy: float, width: int, height: int) -> Lens:
        """The same lens for the image resampled to ``width x height`` (pixel scale sx, sy)."""
        return Lens(self.model, width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, self.dist)
