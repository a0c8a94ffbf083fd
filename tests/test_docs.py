"""The documentation builds in MkDocs' strict mode (a broken link, anchor or nav entry fails
the build), and every relative link of the README points at a file of the repository."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--config-file',
                           str(root / 'mkdocs.yml'), '--site-dir', str(site)],
                          capture_output=True, text=True, cwd=str(root))


def test_docs_build_in_strict_mode(tmp_path):
    proc = build(REPO, tmp_path / 'site')
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / 'site' / 'speed' / 'index.html').is_file()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    copy = tmp_path / 'repo'
    shutil.copytree(REPO / 'docs', copy / 'docs')
    shutil.copy(REPO / 'mkdocs.yml', copy / 'mkdocs.yml')
    page = copy / 'docs' / 'speed.md'
    page.write_text(page.read_text() + '\nSee [the search](search.md#no-such-section).\n')
    proc = build(copy, tmp_path / 'site')
    assert proc.returncode != 0 and 'no-such-section' in proc.stderr


def test_readme_links_point_at_files():
    readme = (REPO / 'README.md').read_text()
    targets = re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', readme)
    relative = [t for t in targets if '://' not in t and not t.startswith('mailto:')]
    assert relative, 'the README links to no page of docs/'
    missing = [t for t in relative if not (REPO / t).exists()]
    assert not missing, f'README links to missing files: {missing}'


def _figure_tool() -> dict:
    import runpy
    return runpy.run_path(str(REPO / '.dev_scripts' / 'model_zoo_figure.py'), run_name='tool')


def test_model_zoo_figure_is_drawn_from_its_data_file(tmp_path):
    import json
    tool = _figure_tool()
    data = tool['load']()
    written = tool['plot'](data, tmp_path)
    assert [p.name for p in written][0] == 'accuracy_vs_flops.png'
    assert all(p.stat().st_size > 10_000 for p in written)
    # UniNet's FLOPs in the data file are the project's own counts.
    from uninet_mm.utils.flops import model_complexity
    b0 = next(e for e in data['models'] if e['name'] == 'UniNet-B0')
    model = tool['build'](b0).eval()
    counted = model_complexity(model, torch.randn(1, 3, 160, 160))['flops'] / 1e9
    assert b0['gmacs'] == round(counted, 3)
    broken = dict(data, models=[{k: v for k, v in b0.items() if k != 'top1_source'}])
    (tmp_path / 'broken.json').write_text(json.dumps(broken))
    with pytest.raises(ValueError, match='top1_source'):
        tool['load'](tmp_path / 'broken.json')
