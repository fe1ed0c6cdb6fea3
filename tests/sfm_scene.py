"""A small textured scene with known cameras for structure-from-motion tests: the inside of a box room
(walls at +-3) with a box (+-0.6) in the middle, every face carrying its own smooth multi-scale noise
texture, rendered by ray-box intersection in numpy. Cameras look at the centre from an arc."""

from __future__ import annotations

import numpy as np

ROOM, BOX = 3.0, 0.6
_TEX = 192  # texels per texture side


def _textures(seed: int) -> np.ndarray:
    """12 RGB textures [12, T, T, 3] in [0, 1]: sums of blurred noise at several scales (rich, smooth)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((12, _TEX, _TEX, 3), np.float32)
    for k in range(12):
        acc = np.zeros((_TEX, _TEX, 3), np.float32)
        for scale, weight in ((32, 0.6), (16, 0.8), (8, 1.0), (4, 0.5)):
            n = rng.normal(size=(_TEX // scale + 2, _TEX // scale + 2, 3)).astype(np.float32)
            acc += weight * cv2.resize(n, (_TEX, _TEX), interpolation=cv2.INTER_CUBIC)
        acc = (acc - acc.mean()) / (acc.std() + 1e-6)
        dots = np.zeros((_TEX, _TEX), np.float32)  # small sharp blobs: what SIFT finds best
        xy = rng.integers(0, _TEX, (_TEX * _TEX // 60, 2))
        dots[xy[:, 0], xy[:, 1]] = rng.choice([-1.0, 1.0], len(xy))
        dots = cv2.GaussianBlur(dots, (0, 0), 1.2) * 12.0
        out[k] = np.clip(0.5 + 0.15 * acc + 0.25 * dots[..., None] + rng.uniform(-0.15, 0.15, 3), 0.0, 1.0)
    return out


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """4x4 camera-to-world, OpenGL axes (looking down -z), at ``eye`` looking at ``target``."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def arc_cameras(n: int, radius: float = 2.0, span_deg: float = 150.0, seed: int = 0) -> np.ndarray:
    """[n, 4, 4] c2w (OpenGL) on a horizontal arc of ``span_deg`` around the centre, heights varying a little,
    each looking at a point near the box."""
    rng = np.random.default_rng(seed)
    angles = np.radians(np.linspace(-span_deg / 2, span_deg / 2, n))
    out = []
    for a in angles:
        eye = np.array([radius * np.sin(a), 0.4 + rng.uniform(-0.3, 0.3), radius * np.cos(a)])
        out.append(look_at(eye, rng.uniform(-0.2, 0.2, 3)))
    return np.stack(out)


def _hit_faces(o: np.ndarray, d: np.ndarray, half: float, inside: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ray distance [N] and face index [N] (axis * 2 + (sign > 0)) where rays o + t d meet an axis-aligned cube
    of half-size ``half``: its exit when ``inside``, its entry otherwise (inf when missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (-half - o) / d, (half - o) / d
    near, far = np.minimum(t0, t1), np.maximum(t0, t1)
    if inside:
        t, axis = far.min(1), far.argmin(1)
        sign = d[np.arange(len(d)), axis] > 0
        return t, axis * 2 + sign
    t, axis = near.max(1), near.argmax(1)
    hit = (t < far.min(1)) & (t > 0)
    sign = d[np.arange(len(d)), axis] < 0  # entering through the face whose normal faces the ray
    return np.where(hit, t, np.inf), axis * 2 + sign


def render(c2w: np.ndarray, width: int, height: int, focal: float, seed: int = 0, supersample: int = 2) -> np.ndarray:
    """[H, W, 3] uint8 image of the scene from ``c2w`` (OpenGL) through a pinhole of ``focal`` pixels, principal
    point at the image centre (pixel centres at i + 0.5)."""
    tex = _textures(seed)
    s = supersample
    j, i = np.meshgrid((np.arange(height * s) + 0.5) / s, (np.arange(width * s) + 0.5) / s, indexing="ij")
    dirs = np.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -np.ones_like(i)], -1).reshape(-1, 3)
    d = dirs @ c2w[:3, :3].T
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    t_room, f_room = _hit_faces(o, d, ROOM, inside=True)
    t_box, f_box = _hit_faces(o, d, BOX, inside=False)
    on_box = t_box < t_room
    t = np.where(on_box, t_box, t_room)
    face = np.where(on_box, f_box + 6, f_room)
    p = o + t[:, None] * d
    axis = (face % 6) // 2
    uv = np.stack([np.where(axis == 0, p[:, 1], p[:, 0]), np.where(axis == 2, p[:, 1], p[:, 2])], 1)
    uv = uv * np.where(on_box, 3.0, 1.0)[:, None]  # finer texture on the box: it is seen from close by
    texel = np.clip((uv + ROOM) * (_TEX - 1) / (2 * ROOM), 0, _TEX - 1.001)
    x0, y0 = np.floor(texel).astype(int).T
    fx, fy = (texel - np.floor(texel)).T[:, :, None]
    col = ((1 - fx) * (1 - fy) * tex[face, y0, x0] + fx * (1 - fy) * tex[face, y0, x0 + 1]
           + (1 - fx) * fy * tex[face, y0 + 1, x0] + fx * fy * tex[face, y0 + 1, x0 + 1])
    shade = 0.75 + 0.25 * np.abs(np.cos(face * 1.3))[:, None]
    img = (col * shade).reshape(height, s, width, s, 3).mean((1, 3))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def scene_images(n: int = 20, width: int = 160, height: int = 120, fov_deg: float = 60.0,
                 seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, float]:
    """(images [H,W,3] uint8, true c2w [n,4,4] OpenGL, focal in pixels) of ``n`` views on the arc."""
    focal = width / 2 / np.tan(np.radians(fov_deg) / 2)
    c2ws = arc_cameras(n, seed=seed)
    return [render(m, width, height, focal, seed) for m in c2ws], c2ws, float(focal)
