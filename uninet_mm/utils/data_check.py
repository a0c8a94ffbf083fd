"""Check, before a runner is built, that the datasets a config points at exist.

Without this, a missing dataset surfaces deep inside mmengine/mmdet/mmseg/mmpretrain (or only
when the first validation starts, hours into a run) as a bare ``FileNotFoundError`` or an empty
dataset. :func:`check_datasets` instead raises :class:`DatasetNotFoundError` naming the
dataloader, the path it looked for and the layout the dataset type expects.
"""
import os
import os.path as osp
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

__all__ = ['DatasetNotFoundError', 'check_datasets', 'dataset_paths', 'EXPECTED_LAYOUTS']

#: Layout hints per dataset type, relative to the dataset's ``data_root``.
EXPECTED_LAYOUTS = {
    'CocoDataset': ('COCO 2017 (instances):\n'
                    '    {root}/annotations/instances_train2017.json\n'
                    '    {root}/annotations/instances_val2017.json\n'
                    '    {root}/train2017/*.jpg\n'
                    '    {root}/val2017/*.jpg'),
    'ADE20KDataset': ('ADE20K (SceneParsing, ADEChallengeData2016):\n'
                      '    {root}/images/training/*.jpg\n'
                      '    {root}/images/validation/*.jpg\n'
                      '    {root}/annotations/training/*.png\n'
                      '    {root}/annotations/validation/*.png'),
    'ImageNet': ('ImageNet-1k:\n'
                 '    {root}/train/<wnid>/*.JPEG   (one folder per class)\n'
                 '    {root}/val/<wnid>/*.JPEG     (or flat folders listed by\n'
                 '    {root}/meta/train.txt and {root}/meta/val.txt)'),
    'ImageNet21k': ('ImageNet-21K (mmpretrain ImageNet21k):\n'
                    '    {root}/train/<wnid>/*.JPEG   (one folder per class, 21842 classes;\n'
                    '    or flat folders listed by {root}/meta/train.txt)'),
}

_SYNTHETIC_HINT = ('For a smoke test without the real data, '
                   'tools/dataset_converters/make_synthetic_data.py writes a small synthetic '
                   'set in the COCO / ADE20K layout.')

# Wrappers whose inner dataset(s) hold the paths.
_INNER_KEYS = ('dataset', 'datasets')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset a config needs is not where the config says it is."""


def _is_remote(path: str) -> bool:
    return '://' in path


def _join(root: str, path: str) -> str:
    if not root or osp.isabs(path) or _is_remote(path):
        return path
    return osp.join(root, path)


def _leaf_datasets(dataset_cfg: Any) -> Iterator[Mapping]:
    """The dataset configs that hold paths (inside RepeatDataset, ConcatDataset, ...)."""
    if isinstance(dataset_cfg, Mapping):
        inner = [dataset_cfg[k] for k in _INNER_KEYS if k in dataset_cfg]
        if inner:
            for item in inner:
                yield from _leaf_datasets(item)
        else:
            yield dataset_cfg
    elif isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from _leaf_datasets(item)


def dataset_paths(dataset_cfg: Mapping) -> List[Tuple[str, str]]:
    """``(kind, path)`` pairs a dataset config needs, kind being ``'file'`` or ``'dir'``.

    Understands the conventions of mmdet/mmseg/mmpretrain datasets: ``data_root`` joined with
    ``ann_file`` (a file) and with every ``data_prefix`` entry (folders); mmpretrain's ImageNet
    without ``ann_file``/``data_prefix`` reads the folder ``data_root/<split>``.
    """
    root = dataset_cfg.get('data_root') or ''
    paths: List[Tuple[str, str]] = []
    ann_file = dataset_cfg.get('ann_file') or ''
    if ann_file:
        paths.append(('file', _join(root, ann_file)))
    prefix = dataset_cfg.get('data_prefix') or ''
    prefixes = list(prefix.values()) if isinstance(prefix, Mapping) else [prefix]
    prefixes = [p for p in prefixes if isinstance(p, str) and p]
    for p in prefixes:
        paths.append(('dir', _join(root, p)))
    split = dataset_cfg.get('split') or ''
    if split and not ann_file and not prefixes:
        paths.append(('dir', _join(root, split)))
    if not paths and root:
        paths.append(('dir', root))
    return paths


def _layout_hint(dataset_cfg: Mapping) -> str:
    ds_type = dataset_cfg.get('type', '')
    ds_type = ds_type if isinstance(ds_type, str) else getattr(ds_type, '__name__', '')
    ds_type = ds_type.split('.')[-1]
    root = (dataset_cfg.get('data_root') or '.').rstrip('/')
    layout = EXPECTED_LAYOUTS.get(ds_type)
    if layout is None:
        return f'Expected layout: see the documentation of {ds_type or "the dataset"}.'
    return 'Expected layout, ' + layout.format(root=root)


def _uses_remote_backend(dataset_cfg: Mapping) -> bool:
    backend_args = dataset_cfg.get('backend_args') or {}
    backend = backend_args.get('backend', 'local') if isinstance(backend_args, Mapping) else 'local'
    return backend not in ('local', 'disk') or _is_remote(str(dataset_cfg.get('data_root') or ''))


def check_dataset(dataset_cfg: Mapping, loader_name: str = 'dataloader') -> None:
    """Raise :class:`DatasetNotFoundError` if a path ``dataset_cfg`` needs is missing."""
    for leaf in _leaf_datasets(dataset_cfg):
        if _uses_remote_backend(leaf):
            continue
        missing = [(kind, path) for kind, path in dataset_paths(leaf)
                   if not _is_remote(path)
                   and not (osp.isfile(path) if kind == 'file' else osp.isdir(path))]
        if not missing:
            continue
        ds_type = leaf.get('type', 'dataset')
        lines = [f'{loader_name}: the {ds_type} data were not found.']
        for kind, path in missing:
            what = 'annotation file' if kind == 'file' else 'folder'
            lines.append(f'  missing {what}: {path}  (absolute: {osp.abspath(path)})')
        lines.append(_layout_hint(leaf))
        key = f'{loader_name}.dataset.data_root'
        lines.append(f'Put (or symlink) the dataset there, or point the config at it, e.g. '
                     f'--cfg-options {key}=/path/to/data (relative paths are resolved from '
                     f'the current directory, {os.getcwd()}).')
        lines.append(_SYNTHETIC_HINT)
        raise DatasetNotFoundError('\n'.join(lines))


def check_datasets(cfg: Mapping, splits: Sequence[str] = ('train', 'val'),
                   loader_names: Optional[Sequence[str]] = None) -> None:
    """Check the datasets of ``<split>_dataloader`` for every split in ``splits``.

    Dataloaders that are absent or ``None`` are skipped, and so is ``val`` when ``val_cfg`` is
    ``None`` (the runner then never builds it).
    """
    names = list(loader_names) if loader_names is not None else [f'{s}_dataloader'
                                                                   for s in splits]
    for name in names:
        loader = cfg.get(name)
        if not loader:
            continue
        loop_key = name.replace('_dataloader', '_cfg')
        if name != 'train_dataloader' and loop_key in cfg and cfg.get(loop_key) is None:
            continue
        dataset = loader.get('dataset') if isinstance(loader, Mapping) else None
        if dataset is None:
            continue
        check_dataset(dataset, name)
