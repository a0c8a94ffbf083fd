"""Files this package ships beside its code: the configs.

An installed wheel carries them as ``uninet_mm/.mim/configs`` (the layout mmdet, mmseg and
``mim`` use, written by ``setup.py``'s ``build_py``); a source checkout (an editable install)
has them as the repository's ``configs/``.
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: A file every complete copy of the configs has.
MARKER = Path('_base_') / 'uninet_in1k.py'


def configs_dir() -> Path:
    """The project's ``configs/`` folder, from an installed wheel or a source checkout.

    Raises:
        FileNotFoundError: neither is there (e.g. a wheel built without its configs).
    """
    candidates = (PACKAGE_DIR / '.mim' / 'configs', PACKAGE_DIR.parent / 'configs')
    for path in candidates:
        if (path / MARKER).is_file():
            return path
    raise FileNotFoundError(f'the uninet_mm configs are in none of {[str(p) for p in candidates]}; '
                            f'reinstall the package (pip install uninet_mm, or pip install -e . '
                            f'in a clone)')
