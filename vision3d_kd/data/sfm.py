"""Structure from motion on your own photos or video (pycolmap on the CPU), written as a capture folder.

``process_photos(SOURCE, OUT)`` does what nerfstudio's ``ns-process-data`` does: images upright and within a
size limit (`sfm_inputs.py`), SIFT features, matching (exhaustive for photo sets up to `EXHAUSTIVE_MAX`
images, sequential for video frames), incremental mapping; the reconstruction with the most registered
images is kept and written atomically::

    OUT/images/NAME                       the registered images only
    OUT/sparse/0/{cameras,images,points3D}.bin   COLMAP model (COLMAP's world frame, OpenCV w2c poses)
    OUT/transforms.json                   nerfstudio layout: per-frame lens, c2w OpenGL, same world frame
    OUT/sparse_pc.ply                     the model's 3D points (x y z float, red green blue uchar)

Both `load_dataset` routes (transforms.json and COLMAP) read OUT; ``v3kd fit OUT`` trains on it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .capture_io import staging_folder, write_points_ply, write_transforms_json
from .colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    camera_from_lens,
    colmap_frames,
    read_colmap_model,
    rotmat_to_qvec,
)
from .colmap import write_colmap_model as write_model
from .frames import data_error
from .lens import SUPPORTED_MODELS, Lens
from .sfm_inputs import (
    IMAGE_SUFFIXES,
    UPSCALED_SUFFIX,
    VIDEO_SUFFIXES,
    Progress,
    copy_photos,
    sample_video,
    upscaled_copies,
)

__all__ = ["process_photos", "MATCHERS", "EXHAUSTIVE_MAX", "MIN_REGISTERED", "reconstruction_to_model",
           "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "SFM_MIN_SIZE", "downscaled_model"]

MATCHERS = ("auto", "exhaustive", "sequential")
EXHAUSTIVE_MAX = 100  # "auto" matches every pair up to this many photos, then sequentially
MIN_REGISTERED = 3
# images whose long side is shorter are upscaled (bicubic, an integer factor) for feature extraction and
# mapping only: on 160x120 renders this halved the pose errors (bench/TUNING.md); the outputs keep the originals
SFM_MIN_SIZE = 640
_WORK = ".sfm_work"  # scratch inside the staging folder: the feature database and COLMAP's own models


def _check_options(source: Path, frames: int, matcher: str, camera_model: str, max_size: int) -> None:
    if matcher not in MATCHERS:
        raise ConfigError(f"matcher must be one of {', '.join(MATCHERS)}, got {matcher!r}")
    if camera_model not in SUPPORTED_MODELS:
        raise ConfigError(f"camera model must be one of {', '.join(SUPPORTED_MODELS)}, got {camera_model!r}")
    if frames < MIN_REGISTERED:
        raise ConfigError(f"frames must be at least {MIN_REGISTERED}, got {frames}")
    if max_size < 32:
        raise ConfigError(f"max size must be at least 32 pixels, got {max_size}")
    try:
        import pycolmap  # noqa: F401
    except ImportError:
        raise ConfigError("v3kd data process needs pycolmap: pip install 'pycolmap>=4.2'") from None
    if not source.exists():
        raise data_error(source, "does not exist (expected a folder of images or a video file)")
    if source.is_file() and source.suffix.lower() not in VIDEO_SUFFIXES:
        raise data_error(source, f"is neither a folder of images nor a video ({'/'.join(VIDEO_SUFFIXES)})")


@contextlib.contextmanager
def _quiet_colmap() -> Iterator[None]:
    """COLMAP's INFO and WARNING log off while it runs (its errors still reach stderr)."""
    import pycolmap

    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def _by_size(images: Path, names: list[str]) -> list[list[str]]:
    """``names`` grouped by image size (portrait and landscape photos of one phone make two groups)."""
    from PIL import Image

    groups: dict[tuple[int, int], list[str]] = {}
    for name in names:
        with Image.open(images / name) as img:
            groups.setdefault(img.size, []).append(name)
    return list(groups.values())


def _extract(db: Path, images: Path, names: list[str], camera_model: str, single_camera: bool, threads: int,
             progress: Progress | None, affine: bool = True) -> None:
    """SIFT features of every image into ``db``, in batches so progress can be reported; with
    ``single_camera`` one camera per image size (its intrinsics refined by mapping), else one per image;
    ``affine``: affine-adapted SIFT (for photo sets with wide baselines)."""
    import pycolmap

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.use_gpu = False
    # affine-adapted SIFT (a CPU-only COLMAP option) halved the pose errors of the validation capture's wide-
    # baseline photo set (0.88 -> 0.48 deg); on small-baseline video frames plain SIFT did better (bench/TUNING.md)
    extraction.sift.estimate_affine_shape = affine
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    batch, done = max(4, len(names) // 20), 0
    for camera_id, group in enumerate(_by_size(images, names) if single_camera else [names], start=1):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        for start in range(0, len(group), batch):
            pycolmap.extract_features(db, images, image_names=group[start:start + batch], camera_mode=mode,
                                      reader_options=reader, extraction_options=extraction,
                                      device=pycolmap.Device.cpu)
            if single_camera:
                reader.existing_camera_id = camera_id  # the group's later batches share its first batch's camera
            done += len(group[start:start + batch])
            if progress:
                progress("features", done, len(names))


def _match(db: Path, sequential: bool, threads: int, progress: Progress | None) -> None:
    import pycolmap

    if progress:
        progress("matching", 0, 1)
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = threads
    options.use_gpu = False
    if sequential:
        pycolmap.match_sequential(db, matching_options=options, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(db, matching_options=options, device=pycolmap.Device.cpu)
    if progress:
        progress("matching", 1, 1)


def _map(db: Path, images: Path, work: Path, n_images: int, threads: int, progress: Progress | None,
         principal_point: bool = False) -> Any:
    """Incremental mapping (bundle adjustment also refining the principal points when ``principal_point``);
    the reconstruction with the most registered images, or None."""
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.random_seed = 0
    options.ba_refine_principal_point = principal_point
    registered = [0]

    def next_image() -> None:
        registered[0] += 1
        if progress:
            progress("mapping", min(registered[0], n_images), n_images)

    models = pycolmap.incremental_mapping(db, images, work / "sparse", options, next_image_callback=next_image)
    if not models:
        return None
    return max(models.values(), key=lambda rec: rec.num_reg_images())


def reconstruction_to_model(rec: Any) -> ColmapModel:
    """Our `ColmapModel` of a ``pycolmap.Reconstruction``: its registered images (w2c, keypoints and their
    3D point ids), the cameras they use and every 3D point with its track."""
    images: dict[int, ColmapImage] = {}
    for image_id in sorted(rec.reg_image_ids()):
        im = rec.image(image_id)
        pose = im.cam_from_world()
        points = im.points2D
        xys = np.array([p.xy for p in points], np.float64).reshape(-1, 2)
        ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in points], np.int64)
        images[image_id] = ColmapImage(image_id, im.camera_id, im.name, rotmat_to_qvec(pose.rotation.matrix()),
                                       np.asarray(pose.translation, np.float64), xys, ids)
    used = {im.camera_id for im in images.values()}
    cameras = {cid: ColmapCamera(cid, cam.model.name, int(cam.width), int(cam.height),
                                 tuple(float(v) for v in cam.params))
               for cid, cam in rec.cameras.items() if cid in used}
    point_ids = np.array(sorted(rec.points3D.keys()), np.int64)
    pts = [rec.points3D[int(i)] for i in point_ids]
    xyz = np.array([p.xyz for p in pts], np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], np.uint8).reshape(-1, 3)
    err = np.array([p.error for p in pts], np.float64)
    tracks = [np.array([(e.image_id, e.point2D_idx) for e in p.track.elements], np.int64).reshape(-1, 2)
              for p in pts]
    return ColmapModel(cameras, images, xyz, rgb, err, point_ids, tracks)


def downscaled_model(model: ColmapModel, factor: int) -> ColmapModel:
    """``model`` reconstructed on images upscaled by ``factor`` (`upscaled_copies`), for the original images:
    focal lengths, principal points, keypoints and point errors (pixels) divided by ``factor`` (distortion is in
    normalised units and unchanged), image names without UPSCALED_SUFFIX. Poses and 3D points are the same."""
    if factor == 1:
        return model
    cameras = {}
    for cid, cam in model.cameras.items():
        width, height = cam.width // factor, cam.height // factor
        lens = Lens.from_colmap(cam.model, cam.width, cam.height, cam.params).scaled(1 / factor, 1 / factor,
                                                                                     width, height)
        cameras[cid] = camera_from_lens(cid, lens)
    images = {iid: ColmapImage(im.id, im.camera_id, im.name.removesuffix(UPSCALED_SUFFIX), im.qvec, im.tvec,
                               im.xys / factor, im.point3d_ids) for iid, im in model.images.items()}
    err = model.points_error
    err = None if err is None else np.where(err >= 0, err / factor, err)
    return ColmapModel(cameras, images, model.points_xyz, model.points_rgb, err, model.point_ids, model.point_tracks)


def _write_outputs(tmp: Path, model: ColmapModel) -> None:
    """sparse/0 (our writer), then transforms.json and sparse_pc.ply from what our reader reads back."""
    sparse = write_model(model, tmp / "sparse" / "0", binary=True)
    frames = colmap_frames(read_colmap_model(sparse), tmp / "images", sparse)
    write_transforms_json(tmp / "transforms.json", [f"images/{f.image.name}" for f in frames],
                          [f.c2w for f in frames], [f.lens for f in frames], "sparse_pc.ply")
    write_points_ply(tmp / "sparse_pc.ply", model.points_xyz, model.points_rgb)


def _gather(source: Path, images: Path, frames: int, max_size: int,
            progress: Progress | None) -> tuple[list[str], list[str], bool]:
    """(image names, warnings, is_video) after copying photos or sampling the video into ``images``."""
    if source.is_dir():
        names, warnings = copy_photos(source, images, max_size, progress)
        return names, warnings, False
    names, warnings = sample_video(source, images, frames, max_size, progress)
    return names, warnings, True


def process_photos(source: Path | str, out: Path | str, *, frames: int = 300, matcher: str = "auto",
                   camera_model: str = "OPENCV", single_camera: bool = True, max_size: int = 1600,
                   refine_principal_point: bool = True, num_threads: int = -1,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Structure from motion on a folder of photos (.jpg/.jpeg/.png) or a video (``frames`` frames sampled)
    into capture folder ``out`` (layout in the module docstring; atomic, an existing non-empty ``out`` refused).

    ``matcher``: auto (exhaustive up to EXHAUSTIVE_MAX photos, sequential for videos and larger sets),
    exhaustive or sequential. ``camera_model``: the COLMAP model to estimate (one of SUPPORTED_MODELS),
    shared by all images when ``single_camera``. ``max_size``: long side in pixels above which images are
    downscaled; smaller ones than SFM_MIN_SIZE are matched on upscaled copies. ``refine_principal_point``:
    bundle adjustment refines each camera's principal point (else it stays at the image centre).
    ``num_threads``: COLMAP threads (-1 all cores). ``progress(stage, done, total)`` is called as work
    proceeds. Returns a summary: source, out, images (in), registered, points, reprojection_error_px (mean,
    pixels of the images written), upscale (the factor SfM saw them at), seconds, matcher, camera_model,
    warnings (lines; e.g. images that did not register). A DataError names the source when there are no
    images, the video is unreadable or fewer than MIN_REGISTERED images register."""
    start = time.perf_counter()
    source, out = Path(source), Path(out)
    _check_options(source, frames, matcher, camera_model, max_size)
    with staging_folder(out, what="the processed data") as tmp:
        images, work = tmp / "images", tmp / _WORK
        images.mkdir()
        work.mkdir()
        names, warnings, is_video = _gather(source, images, frames, max_size, progress)
        if len(names) < MIN_REGISTERED:
            raise data_error(source, f"found {len(names)} images; structure from motion needs at least "
                                     f"{MIN_REGISTERED}")
        sequential = matcher == "sequential" or (matcher == "auto" and (is_video or len(names) > EXHAUSTIVE_MAX))
        db = work / "database.db"
        factor = upscaled_copies(images, names, SFM_MIN_SIZE, work / "upscaled")
        seen, seen_names = (work / "upscaled", [n + UPSCALED_SUFFIX for n in names]) if factor > 1 else (images, names)
        with _quiet_colmap():
            _extract(db, seen, seen_names, camera_model, single_camera, num_threads, progress, affine=not sequential)
            _match(db, sequential, num_threads, progress)
            rec = _map(db, seen, work, len(names), num_threads, progress, refine_principal_point)
        n_reg = rec.num_reg_images() if rec is not None else 0
        if n_reg < MIN_REGISTERED:
            raise DataError(f"{source}: structure from motion registered {n_reg} of {len(names)} images (need "
                            f"{MIN_REGISTERED}); the images may overlap too little or lack texture")
        if progress:
            progress("writing", 0, 1)
        model = downscaled_model(reconstruction_to_model(rec), factor)
        error = float(rec.compute_mean_reprojection_error()) / factor
        shutil.rmtree(work)
        registered = {im.name for im in model.images.values()}
        missing = [n for n in names if n not in registered]
        for name in missing:
            (images / name).unlink()
        if missing:
            warnings.append(f"{len(missing)} of {len(names)} images did not register and were left out: "
                            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        _write_outputs(tmp, model)
        if progress:
            progress("writing", 1, 1)
    return {"source": str(source), "out": str(out), "images": len(names), "registered": len(registered),
            "points": len(model.points_xyz), "reprojection_error_px": error, "upscale": factor,
            "seconds": time.perf_counter() - start, "matcher": "sequential" if sequential else "exhaustive",
            "camera_model": camera_model, "warnings": warnings}

