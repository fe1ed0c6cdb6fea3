"""Up axes of exported files, and turning splat clouds between frames.

Runs live in a z-up, right-handed world (x right, y forward, z up; Blender's). Files written for other
tools are turned so that a chosen axis of the file points up in the scene (`up`):

- "+z": the run's world unchanged (nerfstudio's meshes, Blender);
- "+y": y up, (x, y, z) -> (x, z, -y) — glTF (by specification), three.js, .spz (RUB by specification);
- "-y": y down, (x, y, z) -> (x, -z, y) — RDF, the COLMAP/OpenCV frame that 3DGS PLY and .splat files
  are trained in and that splat viewers (SuperSplat, splat-transform, GaussianSplats3D) assume.

A Gaussian cloud turns as a whole: centres by the matrix, rotations by its quaternion (pre-multiplied),
SH coefficients band by band.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..fields.encodings import sh_encoding

__all__ = ["UP_AXES", "up_rotation", "matrix_quat", "turn_splat_arrays"]

UP_AXES = ("+z", "+y", "-y")
_TURNS = {
    "+z": np.eye(3),
    "+y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "-y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
}


def up_rotation(up: str) -> np.ndarray:
    """3x3 rotation (float64) taking the run's z-up world to a file whose `up` axis points up; ConfigError
    for an axis not in UP_AXES."""
    if up not in _TURNS:
        raise ConfigError(f"--up must be one of {', '.join(UP_AXES)}, got {up!r}")
    return _TURNS[up].copy()


def matrix_quat(rot: np.ndarray) -> np.ndarray:
    """The unit wxyz quaternion of a proper 3x3 rotation matrix (w >= 0)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(np.asarray(rot, dtype=np.float64)).as_quat()
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def _sh_basis(d: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis [M, (degree+1)^2] of unit directions d [M, 3] (the package's 3DGS-convention basis)."""
    return sh_encoding(torch.from_numpy(d).double(), degree + 1).numpy()


def _sh_rotation(rot: np.ndarray, degree: int) -> np.ndarray:
    """Matrix X [K, K] with sum_k (X c)_k Y_k(d) = sum_k c_k Y_k(rot^T d): SH coefficients of a world turned by rot."""
    d = np.random.default_rng(0).normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    x = np.linalg.lstsq(_sh_basis(d, degree), _sh_basis(d @ rot, degree), rcond=None)[0]
    x[np.abs(x) < 1e-12] = 0.0
    return x


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def turn_splat_arrays(a: dict[str, np.ndarray], rot: np.ndarray) -> dict[str, np.ndarray]:
    """A splat cloud (float64 arrays: means [N,3], quats [N,4] wxyz, sh [N,K,3], ...) turned by the proper
    rotation `rot` (3x3): means rot·p, quats q_rot ⊗ q, SH rotated band by band; other arrays unchanged."""
    rot = np.asarray(rot, dtype=np.float64)
    if np.allclose(rot, np.eye(3)):
        return dict(a)
    out = dict(a)
    out["means"] = a["means"] @ rot.T
    out["quats"] = _quat_mul(matrix_quat(rot), a["quats"])
    degree = int(round(np.sqrt(a["sh"].shape[1]))) - 1
    if degree > 0:
        out["sh"] = np.einsum("jk,nkc->njc", _sh_rotation(rot, degree), a["sh"])
    return out
