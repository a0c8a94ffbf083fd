"""The suite's own set-up: what pytest.ini, tests/conftest.py and tools/setup_env.sh promise about
how it runs."""
import importlib
import importlib.util
import os
from pathlib import Path

import pytest


def test_service_tests_share_one_xdist_worker(request, local_ray):
    """Tests that start services (this one uses the session's local Ray) carry the 'services'
    xdist group, so pytest-xdist runs them all on one worker: no two Ray or Slurm clusters
    compete for the cores at once. pytest-xdist drops the group without a word on some pytest
    releases (9.2 with xdist 3.8) or when the conftest marks items after xdist has read them."""
    # xdist's workers run with dist='no' and loadgroup=True when the session is --dist loadgroup
    if 'PYTEST_XDIST_WORKER' not in os.environ or not getattr(request.config.option, 'loadgroup',
                                                              False):
        pytest.skip('checks pytest-xdist --dist loadgroup (pytest.ini); this run is not one')
    assert request.node.nodeid.endswith('@services'), (
        f'{request.node.nodeid}: the xdist group was dropped, so service tests may run on '
        f'several workers at once (pytest {pytest.__version__}; see requirements/tests.txt)')


@pytest.mark.parametrize('module', ['torch.nn.modules.conv', 'mmengine.runner.runner',
                                    'mmdet.models.detectors.mask_rcnn'])
def test_installed_packages_carry_their_bytecode(module):
    """tools/setup_env.sh compiles every installed module once. uv installs without bytecode,
    and where PYTHONDONTWRITEBYTECODE is set Python never writes it, so every tool, test
    subprocess and Ray worker would compile torch, mmengine and mmdet from source again (about
    twice the start-up time)."""
    source = Path(importlib.import_module(module).__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert cached.is_file(), (f'{source} has no bytecode ({cached}): run tools/setup_env.sh, '
                              f'or python -m compileall on the environment\'s site-packages')
    assert cached.stat().st_mtime >= source.stat().st_mtime, f'{cached} is older than {source}'
