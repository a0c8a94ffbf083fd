"""Shared test fixtures: the reference-code fixtures in ../shared and small helpers."""
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get('UNINET_SHARED_DIR', REPO_ROOT.parent / 'shared'))


@pytest.fixture(scope='session')
def official_fixtures() -> Path:
    """Folder with the authors' reference outputs. Missing: a failure in CI, a visible skip
    for a user who cloned without ../shared."""
    path = shared_dir() / 'fixtures' / 'official_uninet'
    if not (path / 'tiny_a_official_state_dict.pth').is_file():
        message = (f'reference fixtures not found at {path}; set UNINET_SHARED_DIR to the '
                   'folder that holds fixtures/official_uninet')
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny_arch(stage_overrides=None) -> dict:
    """A 6-stage arch small enough for fast tests; ``stage_overrides`` maps index -> fields."""
    arch = dict(stem_channels=16, head_channels=64, stages=[
        dict(gop='DWConv', dsm=None, expansion=1, channels=16, repeats=1, stride=1),
        dict(gop='DWConv', dsm='L', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=64, repeats=1, stride=2),
        dict(gop='SA', dsm='LG', expansion=2, channels=64, repeats=1, stride=1),
        dict(gop='SA', dsm='LG', expansion=2, channels=96, repeats=1, stride=2)])
    for index, fields in (stage_overrides or {}).items():
        arch['stages'][index].update(fields)
    return arch
