"""Structure of the package as a maintainer checks it: no import cycles (module-level and
function-level imports alike: a lazy import that closes a cycle is still two modules that need
each other), and private mmengine attributes used in one module only."""
import ast
import importlib
from pathlib import Path
from typing import Dict, List, Set

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / 'uninet_mm'


def _module_names(root: Path) -> Dict[str, Path]:
    names = {}
    for path in root.rglob('*.py'):
        parts = list(path.relative_to(root.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        names['.'.join(parts)] = path
    return names


def _resolve(target: str, modules: Dict[str, Path]) -> str:
    """The module a dotted name refers to: itself, or its nearest enclosing module."""
    while target not in modules and '.' in target:
        target = target.rsplit('.', 1)[0]
    return target


def import_graph(root: Path = PACKAGE_ROOT) -> Dict[str, Set[str]]:
    """``{module: {package modules it imports}}`` for every module below ``root``."""
    modules = _module_names(root)
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                    base = f'{base}.{node.module}' if node.module else base
                else:
                    base = node.module or ''
                targets = [f'{base}.{alias.name}' for alias in node.names]
            for target in targets:
                if target.split('.')[0] == root.name:
                    resolved = _resolve(target, modules)
                    if resolved != name:
                        edges.add(resolved)
        graph[name] = edges
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_sees_a_cycle():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert find_cycles(graph) == [['a', 'b', 'c']]
    assert find_cycles({'a': {'b'}, 'b': set()}) == []


def test_graph_resolves_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / 'uninet_mm'
    (pkg / 'sub').mkdir(parents=True)
    (pkg / '__init__.py').write_text('from .sub import mod\n')
    (pkg / 'sub' / '__init__.py').write_text('')
    (pkg / 'sub' / 'mod.py').write_text('def f():\n    from ..other import thing\n')
    (pkg / 'other.py').write_text('from .sub.mod import f\nimport uninet_mm\n')
    graph = import_graph(pkg)
    assert graph['uninet_mm.sub.mod'] == {'uninet_mm.other'}
    assert graph['uninet_mm.other'] == {'uninet_mm.sub.mod', 'uninet_mm'}
    assert find_cycles(graph) == [['uninet_mm', 'uninet_mm.other', 'uninet_mm.sub.mod']]


def test_package_has_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, f'import cycles in uninet_mm: {cycles}'


#: The one module allowed to touch private mmengine attributes (it says why for each).
PRIVATE_MMENGINE_MODULE = 'uninet_mm.utils.mmengine_private'


def private_mmengine_uses(path: Path) -> List[str]:
    """``'line: what'`` for every private attribute of an mmengine object read in ``path``
    (``MMLogger._instance_dict``) and every private method of an mmengine base class that a
    class there overrides (``Runner._log_env``)."""
    tree = ast.parse(path.read_text(), str(path))
    imported = {}  # local name -> the mmengine object
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == 'mmengine':
            module = importlib.import_module(node.module)
            for alias in node.names:
                imported[alias.asname or alias.name] = getattr(module, alias.name)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in imported and node.attr.startswith('_')
                and not node.attr.startswith('__')):
            found.append(f'{node.lineno}: {node.value.id}.{node.attr}')
        if isinstance(node, ast.ClassDef):
            bases = [imported[b.id] for b in node.bases
                     if isinstance(b, ast.Name) and b.id in imported]
            for item in node.body:
                if (isinstance(item, ast.FunctionDef) and item.name.startswith('_')
                        and not item.name.startswith('__')
                        and any(hasattr(base, item.name) for base in bases)):
                    found.append(f'{item.lineno}: {node.name}.{item.name} overrides a private '
                                 f'mmengine method')
    return found


def test_private_mmengine_finder_sees_reads_and_overrides(tmp_path):
    source = tmp_path / 'mod.py'
    source.write_text('from mmengine.logging import MMLogger\n'
                      'from mmengine.runner import Runner\n'
                      'class Quiet(Runner):\n'
                      '    def _log_env(self, env_cfg):\n'
                      '        pass\n'
                      '    def _mine(self):\n'
                      '        pass\n'
                      'MMLogger._instance_dict.clear()\n'
                      'MMLogger.get_current_instance()\n')
    assert sorted(private_mmengine_uses(source)) == [
        '4: Quiet._log_env overrides a private mmengine method', '8: MMLogger._instance_dict']


def test_private_mmengine_attributes_only_in_their_module():
    modules = _module_names(PACKAGE_ROOT)
    offenders = {name: uses for name, path in modules.items()
                 if name != PRIVATE_MMENGINE_MODULE and (uses := private_mmengine_uses(path))}
    assert not offenders, (f'private mmengine attributes outside {PRIVATE_MMENGINE_MODULE}: '
                           f'{offenders}')
    assert private_mmengine_uses(modules[PRIVATE_MMENGINE_MODULE])
