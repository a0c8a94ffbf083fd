"""Installs uninet_mm; dependencies are read from requirements/."""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildWithConfigs(build_py):
    """Also copies ``configs/`` into the built package as ``uninet_mm/.mim/configs`` (mmdet's
    and mim's layout), so an installed wheel finds the configs that searches generate from
    (:func:`uninet_mm.utils.package_data.configs_dir`)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / 'uninet_mm' / '.mim' / 'configs'
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(HERE / 'configs', target,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


def read_requirements(name: str) -> list:
    """Requirement lines of requirements/<name>.txt, comments and includes dropped."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip() and not ln.startswith('-')]


def read_version() -> str:
    namespace: dict = {}
    exec((HERE / 'uninet_mm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


setup(
    name='uninet_mm',
    version=read_version(),
    description='UniNet backbones (ECCV 2022) for mmdetection, mmsegmentation and mmpretrain',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime'),
    extras_require={
        'mm': read_requirements('mminstall'),
        'tests': read_requirements('tests') + read_requirements('docs'),
        # The documentation site (mkdocs build --strict).
        'docs': read_requirements('docs'),
        # Ray Tune backend of the architecture search (tools/search.py --backend ray) and
        # its NSGA-II searcher (optuna).
        'search': read_requirements('search'),
        # ONNX export and its onnxruntime check (tools/deployment/export_onnx.py).
        'deploy': read_requirements('deploy'),
        'all': (read_requirements('mminstall') + read_requirements('tests')
                + read_requirements('docs')
                + read_requirements('search') + read_requirements('deploy')),
    },
    cmdclass={'build_py': BuildWithConfigs},
    license='Apache-2.0',
    zip_safe=False,
)
