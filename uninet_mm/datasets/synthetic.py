"""Deterministic generator of small synthetic datasets that work out of the box.

Two layouts are produced from the same scene renderer (textured background, coloured shapes
that may overlap each other):

* instance segmentation in COCO format (``make_coco_instances``), readable by pycocotools and
  mmdet's ``CocoDataset``::

      ROOT/annotations/instances_train2017.json
      ROOT/annotations/instances_val2017.json
      ROOT/train2017/000000000001.jpg ...
      ROOT/val2017/000000000001.jpg ...

* semantic segmentation in the ADE20K layout (``make_ade20k_semantic``), readable by mmseg's
  ``ADE20KDataset`` with ``reduce_zero_label=True``::

      ROOT/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
      ROOT/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png

Masks are exact: every object is rasterised once into a boolean mask, the image is painted
from those masks in depth order, and an object's annotation is the set of its pixels that are
still visible after the objects painted above it (stored as uncompressed COCO RLE). Objects
are placed so that none is hidden by more than ``max_occlusion`` of its area.

Everything is a function of ``seed`` (and of the split and image index), so the same call gives
the same files byte for byte. A ``synthetic_manifest.json`` in ROOT records the parameters;
calling again with the same parameters does nothing.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from mmengine.logging import MMLogger

GENERATOR_VERSION = 1
MANIFEST_NAME = 'synthetic_manifest.json'

#: Shape categories, in category-id order (COCO ids 1..5, ADE labels 1..5 or 2..6).
SHAPE_CLASSES: Tuple[str, ...] = ('circle', 'rectangle', 'triangle', 'star', 'ring')
#: One colour per shape class, for visualisers.
SHAPE_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (220, 20, 60), (0, 130, 255), (255, 170, 0), (150, 60, 220), (0, 190, 110))

#: Class names of the ADE20K-style set when the background is a class of its own.
SEMANTIC_CLASSES: Tuple[str, ...] = ('background', ) + SHAPE_CLASSES
SEMANTIC_PALETTE: Tuple[Tuple[int, int, int], ...] = ((120, 120, 120), ) + SHAPE_PALETTE

PathLike = Union[str, os.PathLike]

_SPLIT_CODES = {'train': 1, 'val': 2}


def _logger() -> MMLogger:
    return MMLogger.get_current_instance()


# ----------------------------------------------------------------------------------------------
# Rasterisation
# ----------------------------------------------------------------------------------------------
def _pixel_grid(height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each of shape (H, W)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return xs + 0.5, ys + 0.5


def polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside a (possibly concave) polygon.

    Uses the even-odd crossing rule; ``points`` is an (N, 2) array of (x, y) vertices.
    """
    xs, ys = _pixel_grid(height, width)
    inside = np.zeros((height, width), dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        if ay == by:
            continue
        crosses = (ay > ys) != (by > ys)
        x_at = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (xs < x_at)
    return inside


def _rotated(points: np.ndarray, angle: float, cx: float, cy: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T + np.array([cx, cy])


def shape_mask(kind: str, cx: float, cy: float, size: float, rng: np.random.Generator,
               height: int, width: int) -> np.ndarray:
    """Rasterise one shape of class ``kind`` centred at (cx, cy) with outer radius ``size``."""
    if kind in ('circle', 'ring'):
        xs, ys = _pixel_grid(height, width)
        d2 = (xs - cx) ** 2 + (ys - cy) ** 2
        mask = d2 <= size ** 2
        if kind == 'ring':
            inner = size * rng.uniform(0.45, 0.62)
            mask &= d2 >= inner ** 2
        return mask
    angle = rng.uniform(0, 2 * math.pi)
    if kind == 'rectangle':
        aspect = rng.uniform(0.55, 1.0)
        half_w = size / math.sqrt(1 + aspect ** 2)
        half_h = half_w * aspect
        pts = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h],
                        [-half_w, half_h]])
    elif kind == 'triangle':
        base = np.array([math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)])
        base = base + rng.uniform(-0.25, 0.25, size=3)
        radii = size * rng.uniform(0.85, 1.0, size=3)
        pts = np.stack([radii * np.cos(base), radii * np.sin(base)], axis=1)
    elif kind == 'star':
        inner = rng.uniform(0.38, 0.5)
        ang = np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, size, size * inner)
        pts = np.stack([radii * np.cos(ang), radii * np.sin(ang)], axis=1)
    else:
        raise ValueError(f'unknown shape kind {kind!r}')
    return polygon_mask(_rotated(pts, angle, cx, cy), height, width)


# ----------------------------------------------------------------------------------------------
# Scene rendering
# ----------------------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] of shape (H, W)."""
    gh = max(2, int(round(cells * height / max(height, width))) + 1)
    gw = max(2, int(round(cells * width / max(height, width))) + 1)
    grid = rng.random((gh, gw)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC))
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured background: two-colour blotches, optional stripes, thin clutter lines, noise."""
    c1 = rng.uniform(20, 235, size=3)
    c2 = np.clip(c1 + rng.uniform(-70, 70, size=3), 0, 255)
    field = _smooth_field(rng, height, width, cells=int(rng.integers(3, 8)))[..., None]
    img = c1 * (1 - field) + c2 * field
    xs, ys = _pixel_grid(height, width)
    if rng.random() < 0.5:
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        stripes = np.sin((xs * math.cos(theta) + ys * math.sin(theta)) * 2 * math.pi / period)
        img = img + rng.uniform(6, 20) * stripes[..., None]
    for _ in range(int(rng.integers(0, 4))):
        # Thin straight line across part of the image: clutter that is not an object.
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        theta = rng.uniform(0, math.pi)
        dist = np.abs((xs - x0) * math.sin(theta) - (ys - y0) * math.cos(theta))
        along = np.abs((xs - x0) * math.cos(theta) + (ys - y0) * math.sin(theta))
        line = (dist <= rng.uniform(0.5, 1.5)) & (along <= rng.uniform(20, max(width, height)))
        img[line] = rng.uniform(0, 255, size=3)
    img = img + rng.normal(0, rng.uniform(2, 8), size=img.shape)
    return img


def _object_colour(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A random colour that stands out from ``reference`` (the local background colour)."""
    best, best_dist = None, -1.0
    for _ in range(12):
        colour = rng.uniform(0, 255, size=3)
        dist = float(np.linalg.norm(colour - reference))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= 90:
            break
    return best


def render_scene(rng: np.random.Generator, image_size: Tuple[int, int],
                 num_objects: Tuple[int, int] = (2, 6),
                 size_range: Tuple[float, float] = (0.05, 0.24),
                 max_occlusion: float = 0.4,
                 full_masks: Optional[List[np.ndarray]] = None
                 ) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Render one scene.

    Args:
        rng: random generator; the scene is a function of its state.
        image_size: (height, width).
        num_objects: inclusive range of the number of objects to place.
        size_range: object outer radius range as a fraction of min(height, width),
            sampled log-uniformly.
        max_occlusion: largest fraction of an object that later objects may hide.
        full_masks: if a list is given, each object's whole (unoccluded) mask is appended.

    Returns:
        ``(image, instance_map, labels)``: the uint8 RGB image (H, W, 3); an int32 map whose
        value ``k`` (1-based) marks the visible pixels of object ``k`` and 0 the background;
        the 0-based class index (into ``SHAPE_CLASSES``) of each object.
    """
    height, width = image_size
    short = min(height, width)
    xs, ys = _pixel_grid(height, width)
    bg = _background(rng, height, width)
    img = bg.copy()
    instance_map = np.zeros((height, width), dtype=np.int32)
    full_areas: List[int] = []
    labels: List[int] = []
    target = int(rng.integers(num_objects[0], num_objects[1] + 1))
    lo, hi = math.log(size_range[0] * short), math.log(size_range[1] * short)
    attempts = 0
    while len(labels) < target and attempts < target * 25:
        attempts += 1
        label = int(rng.integers(len(SHAPE_CLASSES)))
        size = math.exp(rng.uniform(lo, hi))
        margin = size + 1
        if 2 * margin >= min(height, width):
            continue
        cx = rng.uniform(margin, width - margin)
        cy = rng.uniform(margin, height - margin)
        mask = shape_mask(SHAPE_CLASSES[label], cx, cy, size, rng, height, width)
        area = int(mask.sum())
        if area < 20:
            continue
        # Reject placements that would hide too much of an object placed earlier.
        covered = instance_map[mask]
        ok = True
        if covered.any():
            hidden = np.bincount(covered, minlength=len(labels) + 1)
            for k in range(1, len(labels) + 1):
                visible = int((instance_map == k).sum()) - int(hidden[k])
                if visible < (1 - max_occlusion) * full_areas[k - 1] or visible < 20:
                    ok = False
                    break
        if not ok:
            continue
        local = bg[mask].mean(axis=0)
        colour = _object_colour(rng, local)
        # Mild shading and noise so objects are not perfectly flat.
        theta = rng.uniform(0, 2 * math.pi)
        ramp = ((xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)) / max(size, 1.0)
        shade = rng.uniform(5, 25) * ramp[mask][:, None]
        noise = rng.normal(0, 3, size=(area, 3))
        img[mask] = colour + shade + noise
        labels.append(label)
        full_areas.append(area)
        if full_masks is not None:
            full_masks.append(mask)
        instance_map[mask] = len(labels)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return image, instance_map, labels


# ----------------------------------------------------------------------------------------------
# COCO helpers
# ----------------------------------------------------------------------------------------------
def mask_to_rle(mask: np.ndarray) -> Dict[str, list]:
    """Uncompressed COCO RLE of a boolean (H, W) mask (column-major runs, zeros first)."""
    flat = np.asarray(mask, dtype=bool).ravel(order='F')
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': [int(c) for c in counts]}


def rle_to_mask(rle: Dict[str, list]) -> np.ndarray:
    """Inverse of :func:`mask_to_rle`."""
    h, w = rle['size']
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for count in rle['counts']:
        if val:
            flat[pos:pos + count] = True
        pos += count
        val = not val
    return flat.reshape((h, w), order='F')


def mask_to_bbox(mask: np.ndarray) -> List[float]:
    """COCO ``[x, y, w, h]`` box of a boolean mask (pixel-inclusive, like pycocotools)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


# ----------------------------------------------------------------------------------------------
# Manifest / idempotence
# ----------------------------------------------------------------------------------------------
def read_manifest(root: PathLike) -> Optional[dict]:
    """The manifest of synthetic data written under ``root`` (None if there is none)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST_NAME + '.tmp')
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, root / MANIFEST_NAME)


def _clean_dir(directory: Path, pattern: str) -> None:
    """Remove files this generator wrote earlier (names matching ``pattern``) from a folder."""
    if not directory.is_dir():
        return
    regex = re.compile(pattern)
    for item in directory.iterdir():
        if item.is_file() and regex.fullmatch(item.name):
            item.unlink()


def _save_image(image: np.ndarray, path: Path) -> None:
    if path.suffix.lower() in ('.jpg', '.jpeg'):
        Image.fromarray(image).save(path, quality=95, subsampling=0)
    else:
        Image.fromarray(image).save(path, compress_level=6)


def scene_rng(seed: int, split: str, index: int, kind: str = 'coco') -> np.random.Generator:
    """The random generator that draws image ``index`` of ``split`` for a ``kind`` data set."""
    salt = {'coco': 11, 'ade20k': 23}[kind]
    return np.random.default_rng([int(seed), salt, _SPLIT_CODES[split], int(index)])


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def make_coco_instances(root: PathLike, num_train: int = 400, num_val: int = 50,
                        image_size: Tuple[int, int] = (256, 320), seed: int = 0,
                        num_objects: Tuple[int, int] = (2, 6),
                        size_range: Tuple[float, float] = (0.05, 0.24),
                        img_format: str = 'jpg', force: bool = False) -> dict:
    """Write a COCO-format instance segmentation set of random shapes under ``root``.

    Args:
        root: output folder (created).
        num_train, num_val: images per split.
        image_size: (height, width) of every image.
        seed: everything generated is a function of it.
        num_objects: inclusive range of objects per image.
        size_range: object radius range as a fraction of the shorter image side.
        img_format: ``'jpg'`` or ``'png'`` (png keeps pixels exact).
        force: regenerate even if the manifest says the data are up to date.

    Returns:
        A dict with ``root``, ``train_ann``, ``val_ann``, ``train_img_dir``, ``val_img_dir``
        (relative to root, as mmdet configs use them), ``classes``, ``palette``, counts of
        images and instances per split, and ``generated`` (False when it was already there).
    """
    root = Path(root)
    img_format = img_format.lower().lstrip('.')
    if img_format not in ('jpg', 'png'):
        raise ValueError(f'img_format must be jpg or png, got {img_format!r}')
    params = dict(kind='coco', version=GENERATOR_VERSION, num_train=int(num_train),
                  num_val=int(num_val), image_size=[int(image_size[0]), int(image_size[1])],
                  seed=int(seed), num_objects=[int(num_objects[0]), int(num_objects[1])],
                  size_range=[float(size_range[0]), float(size_range[1])],
                  img_format=img_format)
    info = dict(root=str(root), train_ann='annotations/instances_train2017.json',
                val_ann='annotations/instances_val2017.json', train_img_dir='train2017/',
                val_img_dir='val2017/', classes=SHAPE_CLASSES, palette=SHAPE_PALETTE)
    manifest = read_manifest(root)
    if (not force and manifest is not None and manifest.get('params') == params
            and (root / info['train_ann']).is_file() and (root / info['val_ann']).is_file()):
        _logger().info(f'synthetic COCO data already present in {root}')
        return dict(info, **manifest['stats'], generated=False)

    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(SHAPE_CLASSES)]
    stats = {}
    for split, count in (('train', num_train), ('val', num_val)):
        img_dir = root / f'{split}2017'
        img_dir.mkdir(parents=True, exist_ok=True)
        _clean_dir(img_dir, r'\d{12}\.(jpg|png)')
        images, annotations = [], []
        for index in range(count):
            rng = scene_rng(seed, split, index, 'coco')
            image, inst_map, labels = render_scene(rng, tuple(image_size), tuple(num_objects),
                                                   tuple(size_range))
            image_id = index + 1
            file_name = f'{image_id:012d}.{img_format}'
            _save_image(image, img_dir / file_name)
            images.append(dict(id=image_id, file_name=file_name, height=int(image_size[0]),
                               width=int(image_size[1])))
            for k, label in enumerate(labels, start=1):
                mask = inst_map == k
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                    segmentation=mask_to_rle(mask), area=float(mask.sum()),
                    bbox=mask_to_bbox(mask), iscrowd=0))
        coco = dict(info=dict(description=f'uninet_mm synthetic shapes ({split})',
                              version=str(GENERATOR_VERSION), year=2024),
                    licenses=[], images=images, annotations=annotations, categories=categories)
        ann_path = root / f'annotations/instances_{split}2017.json'
        ann_path.write_text(json.dumps(coco, separators=(',', ':')))
        stats[f'num_{split}_images'] = count
        stats[f'num_{split}_instances'] = len(annotations)
    _write_manifest(root, dict(generator='uninet_mm.datasets.synthetic', params=params,
                               stats=stats, classes=list(SHAPE_CLASSES)))
    _logger().info(f'wrote synthetic COCO data to {root}: {stats}')
    return dict(info, **stats, generated=True)


def make_ade20k_semantic(root: PathLike, num_train: int = 400, num_val: int = 50,
                         image_size: Tuple[int, int] = (256, 320), seed: int = 0,
                         num_objects: Tuple[int, int] = (3, 8),
                         size_range: Tuple[float, float] = (0.06, 0.26),
                         background_class: bool = True, force: bool = False) -> dict:
    """Write an ADE20K-layout semantic segmentation set of random shapes under ``root``.

    Label pngs follow the ADE20K convention used with ``reduce_zero_label=True``: value 0 is
    "other / ignore", classes are 1..K. With ``background_class=True`` (default) the textured
    background is class 1 (``'background'``) and the shapes are 2..6, so mIoU also scores the
    object boundaries; with ``False`` the background is 0 (ignored) and the shapes are 1..5.

    Args:
        root: output folder; the data go to ``root/ADEChallengeData2016``.
        num_train, num_val: images per split.
        image_size: (height, width) of every image.
        seed: everything generated is a function of it.
        num_objects: inclusive range of objects per image.
        size_range: object radius range as a fraction of the shorter image side.
        background_class: whether the background is a class of its own (see above).
        force: regenerate even if the manifest says the data are up to date.

    Returns:
        A dict with ``root``, ``data_root`` (the ADEChallengeData2016 folder), ``classes``,
        ``palette`` (the ``metainfo`` to give ``ADE20KDataset``), image counts and
        ``generated``.
    """
    root = Path(root)
    data_root = root / 'ADEChallengeData2016'
    params = dict(kind='ade20k', version=GENERATOR_VERSION, num_train=int(num_train),
                  num_val=int(num_val), image_size=[int(image_size[0]), int(image_size[1])],
                  seed=int(seed), num_objects=[int(num_objects[0]), int(num_objects[1])],
                  size_range=[float(size_range[0]), float(size_range[1])],
                  background_class=bool(background_class))
    classes = SEMANTIC_CLASSES if background_class else SHAPE_CLASSES
    palette = SEMANTIC_PALETTE if background_class else SHAPE_PALETTE
    info = dict(root=str(root), data_root=str(data_root), classes=classes, palette=palette,
                train_img_dir='images/training', train_seg_dir='annotations/training',
                val_img_dir='images/validation', val_seg_dir='annotations/validation')
    manifest = read_manifest(root)
    if (not force and manifest is not None and manifest.get('params') == params
            and (data_root / info['train_img_dir']).is_dir()
            and (data_root / info['val_seg_dir']).is_dir()):
        _logger().info(f'synthetic ADE20K data already present in {root}')
        return dict(info, **manifest['stats'], generated=False)

    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    offset = 2 if background_class else 1
    stats = {}
    for split, folder, count in (('train', 'training', num_train),
                                 ('val', 'validation', num_val)):
        img_dir = data_root / 'images' / folder
        seg_dir = data_root / 'annotations' / folder
        for directory in (img_dir, seg_dir):
            directory.mkdir(parents=True, exist_ok=True)
            _clean_dir(directory, rf'ADE_{folder}_\d{{8}}\.(jpg|png)')
        for index in range(count):
            rng = scene_rng(seed, split, index, 'ade20k')
            image, inst_map, labels = render_scene(rng, tuple(image_size), tuple(num_objects),
                                                   tuple(size_range))
            lut = np.array([1 if background_class else 0] + [lab + offset for lab in labels],
                           dtype=np.uint8)
            seg = lut[inst_map]
            stem = f'ADE_{folder}_{index + 1:08d}'
            _save_image(image, img_dir / f'{stem}.jpg')
            Image.fromarray(seg).save(seg_dir / f'{stem}.png')
        stats[f'num_{split}_images'] = count
    _write_manifest(root, dict(generator='uninet_mm.datasets.synthetic', params=params,
                               stats=stats, classes=list(classes)))
    _logger().info(f'wrote synthetic ADE20K data to {data_root}: {stats}')
    return dict(info, **stats, generated=True)


def remove_synthetic(root: PathLike) -> None:
    """Delete a folder written by this module (refuses folders without its manifest)."""
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None or manifest.get('generator') != 'uninet_mm.datasets.synthetic':
        raise ValueError(f'{root} does not look like synthetic data written by uninet_mm')
    shutil.rmtree(root)


__all__: Sequence[str] = [
    'SHAPE_CLASSES', 'SHAPE_PALETTE', 'SEMANTIC_CLASSES', 'SEMANTIC_PALETTE', 'render_scene',
    'scene_rng',
    'shape_mask', 'polygon_mask', 'mask_to_rle', 'rle_to_mask', 'mask_to_bbox',
    'make_coco_instances', 'make_ade20k_semantic', 'read_manifest', 'remove_synthetic'
]
