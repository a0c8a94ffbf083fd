"""The suite's own set-up: what pytest.ini and tests/conftest.py promise about how it runs."""
import os

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
