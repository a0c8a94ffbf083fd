"""Resume only from complete checkpoints, after a training process was killed.

What mmengine does: ``CheckpointHook`` writes ``iter_N.pth`` with ``open(path, 'wb')`` (so a
process killed while saving leaves a truncated file under the final name) and then writes the
file name into ``WORK_DIR/last_checkpoint``, which ``--resume`` without a path follows. With
``max_keep_ckpts`` it deletes the oldest kept checkpoint *before* saving the new one.

What is added here (tools/train.py uses all three):

- :func:`use_atomic_local_writes`: checkpoints (every write of mmengine's local file backend)
  go to a temporary file that is renamed when complete, so a killed save leaves no file under
  the checkpoint's name.
- :func:`find_resume_checkpoint`: the checkpoint ``--resume`` continues from: the one
  ``last_checkpoint`` names when it is complete, otherwise the newest complete ``iter_*.pth`` /
  ``epoch_*.pth`` in the work dir (a warning names every file passed over and why).
- :func:`check_checkpoint_file`: ``--resume PATH`` on a damaged file stops before any training
  with an error naming the file.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import re
import zipfile
from glob import escape, glob
from pathlib import Path
from typing import List, Optional, Union

import mmengine
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import MMLogger, print_log

__all__ = ['DamagedCheckpointError', 'check_checkpoint_file', 'find_resume_checkpoint',
           'AtomicLocalBackend', 'use_atomic_local_writes']

POINTER_NAME = 'last_checkpoint'
_STEP_FILE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


class DamagedCheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or otherwise unreadable."""


def check_checkpoint_file(path: Union[str, Path]) -> None:
    """Raise :class:`DamagedCheckpointError` (naming ``path``) unless ``path`` is a complete
    torch checkpoint.

    ``torch.save`` writes a zip archive whose directory sits at the end of the file, so a
    truncated file has none; every member carries a CRC-32, which :meth:`zipfile.ZipFile.testzip`
    checks. Folders (sharded checkpoints) and URLs are not checked.
    """
    path = str(path)
    if '://' in path or osp.isdir(path):
        return
    if not osp.isfile(path):
        raise DamagedCheckpointError(f'checkpoint {path} does not exist')
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DamagedCheckpointError(
            f'checkpoint {path} is truncated or damaged ({osp.getsize(path)} bytes; it is not '
            f'a complete torch.save archive: {exc})') from None
    if bad_member is not None:
        raise DamagedCheckpointError(
            f'checkpoint {path} is damaged: {bad_member} fails its CRC-32 check')
    if not any(name == 'data.pkl' or name.endswith('/data.pkl') for name in names):
        raise DamagedCheckpointError(f'checkpoint {path} is a zip archive but not a torch '
                                     f'checkpoint (no data.pkl)')


def _step_checkpoints(work_dir: str) -> List[str]:
    """``iter_*.pth`` and ``epoch_*.pth`` in ``work_dir``, newest step first."""
    found = []
    for path in glob(osp.join(escape(work_dir), '*.pth')):
        match = _STEP_FILE.match(osp.basename(path))
        if match:
            found.append((int(match.group(2)), match.group(1) == 'iter', path))
    return [path for _, _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(work_dir: Union[str, Path],
                           logger: Optional[MMLogger] = None) -> Optional[str]:
    """The complete checkpoint to resume from in ``work_dir``, or None if there is none.

    The one ``work_dir/last_checkpoint`` names comes first (mmengine's choice); when that file
    is missing, empty, or names a missing or damaged checkpoint, the newest complete
    ``iter_*.pth`` / ``epoch_*.pth`` is taken instead.
    """
    work_dir = str(work_dir)
    candidates = []
    pointer = osp.join(work_dir, POINTER_NAME)
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    candidates += [p for p in _step_checkpoints(work_dir) if p not in candidates]
    for path in candidates:
        try:
            check_checkpoint_file(path)
        except DamagedCheckpointError as err:
            print_log(f'--resume passes over {err}', logger=logger or 'current',
                      level=logging.WARNING)
            continue
        return path
    return None


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing each file under a temporary name and renaming
    it when complete (``os.replace`` is atomic on POSIX file systems)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._atomic_write(filepath, 'wb', obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self._atomic_write(filepath, 'w', obj, encoding=encoding)

    @staticmethod
    def _atomic_write(filepath: Union[str, Path], mode: str, obj, **kwargs) -> None:
        filepath = str(filepath)
        mmengine.mkdir_or_exist(osp.dirname(filepath) or '.')
        tmp = f'{filepath}.tmp{os.getpid()}'
        try:
            with open(tmp, mode, **kwargs) as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)


def use_atomic_local_writes() -> None:
    """Make mmengine write local files (checkpoints included) with :class:`AtomicLocalBackend`
    from now on in this process."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
