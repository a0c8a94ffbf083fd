"""Classification twins of the synthetic shapes data.

Same scene renderer as :mod:`uninet_mm.datasets.synthetic` (textured background, clutter lines,
shaded and noisy objects). Three tasks (``task``):

* ``'shape'``: exactly one object per image, label = its class (5 classes);
* ``'quadrant'``: the same images, label = the object's class and the quadrant of the image
  its centre (the mean of its pixels) lies in (20 classes: ``circle_top_left``, ...). With
  large objects (the built-in search uses radii of 0.35-0.5 of the side) the centres lie
  within a few pixels of the image centre, so the quadrant is a fine localisation on top of
  the shape: a task whose accuracy grows with what the network can learn in a short training
  (see docs/search.md). Horizontal flips change the label: do not augment with them;
* ``'pair'``: exactly two objects per image, not overlapping, label = the unordered pair of
  their classes (15 classes: ``circle+circle``, ``circle+rectangle``, ... ``ring+star``;
  classes are drawn independently, so a pair of two different shapes is twice as frequent as
  a pair of equal ones). Telling the pair needs both objects recognised and, for equal
  shapes, counted: harder than ``'shape'`` (too hard for the built-in search's budget so far:
  0.11 after 60 steps, chance 0.08; see docs/search.md).

Written in the ImageNet folder layout that mmpretrain's ``CustomDataset`` reads without
annotation files::

    ROOT/train/circle/000001.png ...   ROOT/train/ring/...
    ROOT/val/circle/000001.png ...

Everything is a function of ``seed``; a ``synthetic_manifest.json`` records the parameters so a
second call with the same parameters does nothing. The architecture search's built-in proxy task
(``configs/search/uninet_search_synthetic.py``) trains on ``train`` and scores on ``val``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np

from .synthetic import (GENERATOR_VERSION, MANIFEST_NAME, SHAPE_CLASSES, PathLike, _clean_dir,
                        _logger, _save_image, _write_manifest, read_manifest, render_scene)

_SPLIT_CODES = {'train': 1, 'val': 2}
_SALT = 37
_PAIR_SALT = 41
TASKS = ('shape', 'quadrant', 'pair')
QUADRANTS: Tuple[str, ...] = ('top_left', 'top_right', 'bottom_left', 'bottom_right')
#: Class names of the ``'quadrant'`` task: shape class and quadrant of its centre.
QUADRANT_CLASSES: Tuple[str, ...] = tuple(f'{shape}_{quadrant}' for shape in SHAPE_CLASSES
                                          for quadrant in QUADRANTS)
#: Class names of the ``'pair'`` task: the unordered pairs of shape classes.
PAIR_CLASSES: Tuple[str, ...] = tuple(
    f'{SHAPE_CLASSES[i]}+{SHAPE_CLASSES[j]}'
    for i in range(len(SHAPE_CLASSES)) for j in range(i, len(SHAPE_CLASSES)))


def make_shapes_classification(root: PathLike, num_train: int = 400, num_val: int = 100,
                               image_size: Tuple[int, int] = (32, 32), seed: int = 0,
                               size_range: Tuple[float, float] = (0.25, 0.45),
                               force: bool = False, task: str = 'shape') -> dict:
    """Write a shape classification set under ``root`` (ImageNet folder layout).

    Args:
        root: output folder (created).
        num_train, num_val: images per split; shape classes are drawn uniformly at random.
        image_size: (height, width) of every image.
        seed: everything generated is a function of it.
        size_range: shape radius range as a fraction of the shorter image side.
        force: regenerate even if the manifest says the data are up to date.
        task: ``'shape'`` (one shape, 5 classes), ``'quadrant'`` (one shape, 20 classes:
            its class and the quadrant of its centre) or ``'pair'`` (two shapes, 15 classes:
            the unordered pair); see the module docstring.

    Returns:
        A dict with ``root``, ``train_prefix`` / ``val_prefix`` (folders relative to root),
        ``classes``, image counts per split and ``generated`` (False when already there).
    """
    if task not in TASKS:
        raise ValueError(f'task = {task!r}; choose one of {list(TASKS)}')
    root = Path(root)
    params = dict(kind='shapes_cls', version=GENERATOR_VERSION, num_train=int(num_train),
                  num_val=int(num_val), image_size=[int(image_size[0]), int(image_size[1])],
                  seed=int(seed), size_range=[float(size_range[0]), float(size_range[1])])
    if task != 'shape':  # the 'shape' manifest stays as it was (existing data stay valid)
        params['task'] = task
    classes = dict(shape=SHAPE_CLASSES, quadrant=QUADRANT_CLASSES, pair=PAIR_CLASSES)[task]
    info = dict(root=str(root), train_prefix='train', val_prefix='val', classes=classes)
    manifest = read_manifest(root)
    if (not force and manifest is not None and manifest.get('params') == params
            and all((root / split / name).is_dir()
                    for split in ('train', 'val') for name in classes)):
        return dict(info, **manifest['stats'], generated=False)

    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    stats = {}
    for split, count in (('train', num_train), ('val', num_val)):
        for name in sorted(set(SHAPE_CLASSES) | set(QUADRANT_CLASSES)
                           | set(PAIR_CLASSES)):  # the other tasks' go
            folder = root / split / name
            _clean_dir(folder, r'\d{6}\.png')
            if name in classes:
                folder.mkdir(parents=True, exist_ok=True)
            elif folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        per_class = dict.fromkeys(classes, 0)
        for index in range(count):
            if task in ('shape', 'quadrant'):
                rng = np.random.default_rng([int(seed), _SALT, _SPLIT_CODES[split], index])
                label = int(rng.integers(len(SHAPE_CLASSES)))
                image, mask, drawn = _render_one(rng, tuple(image_size), tuple(size_range),
                                                 label)
                name = SHAPE_CLASSES[drawn]
                if task == 'quadrant':
                    name = f'{name}_{QUADRANTS[quadrant_of(mask)]}'
            else:
                rng = np.random.default_rng([int(seed), _PAIR_SALT, _SPLIT_CODES[split], index])
                image, name = _render_pair(rng, tuple(image_size), tuple(size_range))
            per_class[name] += 1
            _save_image(image, root / split / name / f'{index + 1:06d}.png')
        stats[f'num_{split}_images'] = count
        stats[f'{split}_per_class'] = per_class
    _write_manifest(root, dict(generator='uninet_mm.datasets.synthetic', params=params,
                               stats=stats, classes=list(classes)))
    _logger().info(f'wrote synthetic shape classification data ({task!r} task) to {root}: '
                   f'{num_train} train + {num_val} val images of {image_size[0]}x{image_size[1]}')
    return dict(info, **stats, generated=True)


def quadrant_of(mask: np.ndarray) -> int:
    """Index into ``QUADRANTS`` of the mean position of a (H, W) mask's pixels, split at the
    image centre ((H - 1) / 2, (W - 1) / 2)."""
    ys, xs = np.nonzero(mask)
    below = ys.mean() > (mask.shape[0] - 1) / 2
    right = xs.mean() > (mask.shape[1] - 1) / 2
    return int(below) * 2 + int(right)


def _render_one(rng: np.random.Generator, image_size: Tuple[int, int],
                size_range: Tuple[float, float],
                label: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """Render a scene with exactly one shape, preferably of class ``label``; returns the
    image, the shape's (H, W) mask and its class.

    ``render_scene`` draws its own class, so scenes are redrawn (same generator, deterministic)
    until the class matches; after 50 tries the drawn class is kept as the label.
    """
    found = None
    for _ in range(50):
        image, instances, labels = render_scene(rng, image_size, num_objects=(1, 1),
                                                size_range=size_range, max_occlusion=0.0)
        if labels:
            found = (image, instances == 1, labels[0])
            if labels[0] == label:
                break
    if found is None:
        raise RuntimeError(f'could not place a shape in a {image_size} image; use larger images')
    return found


def _render_pair(rng: np.random.Generator, image_size: Tuple[int, int],
                 size_range: Tuple[float, float]) -> Tuple[np.ndarray, str]:
    """Render a scene with exactly two non-overlapping shapes; returns it and its class name
    (``'<class a>+<class b>'``, the two classes in ``SHAPE_CLASSES`` order)."""
    for _ in range(50):
        image, _, labels = render_scene(rng, image_size, num_objects=(2, 2),
                                        size_range=size_range, max_occlusion=0.0)
        if len(labels) == 2:
            first, second = sorted(labels)
            return image, f'{SHAPE_CLASSES[first]}+{SHAPE_CLASSES[second]}'
    raise RuntimeError(f'could not place two shapes in a {image_size} image; use larger images '
                       f'or smaller shapes (size_range)')
