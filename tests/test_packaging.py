"""An installed wheel (not only an editable clone) carries the configs that searches write
their generated configs from."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from uninet_mm.utils.package_data import configs_dir

REPO = Path(__file__).resolve().parents[1]


def test_source_checkout_finds_the_repository_configs():
    assert configs_dir() == REPO / 'configs'


@pytest.mark.slow  # builds and installs a wheel (about half a minute)
def test_installed_wheel_finds_its_own_configs(tmp_path):
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '--quiet']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '--wheel-dir',
                          str(tmp_path / 'dist'), str(REPO)], check=True, capture_output=True)
    (wheel, ) = (tmp_path / 'dist').glob('uninet_mm-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    assert 'uninet_mm/.mim/configs/_base_/uninet_in1k.py' in names
    assert 'uninet_mm/.mim/configs/search/uninet_search_synthetic.py' in names
    site = tmp_path / 'site'
    subprocess.run(pip + ['install', '--no-deps', '--target', str(site), str(wheel)],
                   check=True, capture_output=True)
    code = ('import uninet_mm.utils.package_data as p; '
            'print(p.__file__); print(p.configs_dir())')
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(site)), out  # the installed copy, not this checkout
    assert out[1] == str(site / 'uninet_mm' / '.mim' / 'configs')
