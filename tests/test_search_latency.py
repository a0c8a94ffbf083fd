"""The latency model (uninet_mm/search/latency.py), its tool and the latency reward, on a tiny
space at a tiny size (one timed run per piece: seconds, not minutes)."""
import json
import os
import random
import runpy
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mmengine.config import Config

from uninet_mm.models.backbones.uninet import UniNet
from uninet_mm.search.config import SearchConfigError, check_search_config
from uninet_mm.search.latency import (CL, InfeasibleArchError, LatencyError, LatencySettingsError,
                                      LatencyTable, MissingEntryError, Piece, Timer,
                                      check_settings, error_stats, fit_scale, layout_of,
                                      measure_networks, pipelined_ms,
                                      sample_feasible_archs, spearman)
from uninet_mm.search.driver import SearchDriver
from uninet_mm.search.embedded import run_embedded
from uninet_mm.search.records import read_log
from uninet_mm.search.report import write_outputs
from uninet_mm.search.reward import MnasReward
from uninet_mm.search.space import SearchSpace

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / 'configs' / 'search' / 'uninet_search_synthetic.py'
TABLE_SIZE = (32, 48)  # not the space's 32x32: MLP archs are infeasible at it

TINY_SPACE = dict(
    base_arch=dict(stem_channels=8, head_channels=32, stages=[
        dict(gop='DWConv', dsm=None, expansion=1, channels=8, repeats=1, stride=1),
        dict(gop='DWConv', dsm='L', expansion=2, channels=16, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=16, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='SA', dsm='LG', expansion=2, channels=32, repeats=1, stride=1),
        dict(gop='SA', dsm='LG', expansion=2, channels=32, repeats=1, stride=2)]),
    gops=('SA', 'DWConv', 'MLP'), dsms=('L', 'LG'), expansions=(2, ), widths=(1.0, 1.5),
    repeat_deltas=(0, 1), input_size=(32, 32))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def space() -> SearchSpace:
    return SearchSpace(**TINY_SPACE)


@pytest.fixture(scope='module')
def table_path(tmp_path_factory, space) -> str:
    path = str(tmp_path_factory.mktemp('latency') / 'tiny.json')
    LatencyTable.build(space, input_size=TABLE_SIZE, repeats=1, warmup=0, extra_archs=['b0'],
                       path=path)
    return path


def feasible_archs(table, space, count=8, seed=0):
    return sample_feasible_archs(table, space, count, seed)[0]


def mlp_arch(space):
    arch = space.base_arch.to_dict()
    arch['stages'][2]['gop'] = 'MLP'
    return arch


# ------------------------------------------------------------------------------- the table
def test_build_save_load_predict(table_path, space):
    table = LatencyTable.load(table_path)
    assert table.data['complete'] and table.settings['input_size'] == list(TABLE_SIZE)
    assert table.settings['threads'] == 1 and table.data['timer'] == 'thread_cpu_time'
    env = table.data['environment']
    assert env['torch'] == torch.__version__ and env['machine'] and env['device_name']
    for arch in feasible_archs(table, space):
        ms = table.predict(arch)
        assert ms > 0
        assert ms == pytest.approx(sum(table.breakdown(arch).values()))
    assert table.predict('b0') > 0  # an extra arch outside the space
    assert table.missing_for(space) == []
    # a loaded table predicts the same as the one in memory
    again = LatencyTable(json.loads(Path(table_path).read_text()))
    arch = feasible_archs(table, space, 1)[0]
    assert again.predict(arch) == table.predict(arch)


runs = st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), max_size=30)


@given(runs)
def test_pipelined_latency_lies_between_the_bottleneck_and_the_serial_sum(pieces):
    gpu, host = sum(p[0] for p in pieces), sum(p[1] for p in pieces)
    total = pipelined_ms(pieces)
    assert max(gpu, host) - 1e-9 <= total <= gpu + host + 1e-9
    assert pipelined_ms([(g, 0.0) for g, _ in pieces]) == pytest.approx(gpu)


def test_pipelined_latency_lets_gpu_work_hide_later_launches():
    # the CPU issues a heavy piece in 1 ms and runs ahead while the GPU works for 10 ms; the
    # next three launch-bound pieces (2 ms to issue, 0.5 ms of GPU work) are issued meanwhile
    assert pipelined_ms([(10, 1)] + [(0.5, 2)] * 3) == pytest.approx(11.5)
    # the other way round, nothing hides the launches: 6 ms of issuing, then 10 ms of GPU work
    assert pipelined_ms([(0.5, 2)] * 3 + [(10, 1)]) == pytest.approx(16)


def test_a_table_with_gpu_and_host_times_predicts_pieces_pipelined(table_path, space):
    """CUDA tables keep each piece's GPU time (queued) and host time: a network is the pieces
    in the order the backbone runs them, pipelined, not their sum."""
    table = LatencyTable.load(table_path)
    arch = feasible_archs(table, space, 1)[0]
    plan = table.plan(arch)
    assert sorted(plan.order) == sorted(k for k, n in plan.counts.items() for _ in range(n))
    assert plan.order[0].startswith('fixed') and plan.order[1].startswith('dsm')
    assert not table.pipelined
    data = json.loads(Path(table_path).read_text())
    for entry in data['entries'].values():
        entry['host_ms'] = 3 * entry['ms']  # launch-bound: the host times decide
    pipelined = LatencyTable(data)
    assert pipelined.pipelined and 'pipelined' in pipelined.describe()
    assert pipelined.predict(arch) == pytest.approx(3 * table.predict(arch))
    bounds = pipelined.predict_bounds(arch)
    assert bounds['gpu_sum'] == pytest.approx(table.predict(arch))
    assert bounds['slower_sum'] == pytest.approx(bounds['pipelined'])  # host-bound throughout
    with pytest.raises(LatencyError, match='host times'):
        table.predict_bounds(arch)
    for entry in data['entries'].values():
        entry['host_ms'] = 0.0
    assert LatencyTable(data).predict(arch) == pytest.approx(table.predict(arch))


def test_every_arch_of_the_space_is_covered(table_path, space):
    """The enumeration of pieces covers what plan_arch asks for, for any sampled arch."""
    table = LatencyTable.load(table_path)
    rng = random.Random(1)
    for _ in range(200):
        arch = space.decode(space.sample(rng))
        if table.infeasible_reason(arch) is None:
            table.predict(arch)


def test_pieces_are_what_the_backbone_runs(table_path, space):
    """Each DSM and block gets, inside UniNet, exactly the input shape and memory layout its
    table key says (the layouts were probed, not assumed), and the returned maps that are not
    NCHW are the ones with a copy piece."""
    table = LatencyTable.load(table_path)
    for arch in feasible_archs(table, space, 6, seed=3):
        model = UniNet(arch=arch).eval()
        seen = []

        def hook(module, inputs, stage, kind):
            x = inputs[0]
            h, w = x.shape[2:]
            if kind == 'dsm':
                piece = Piece('dsm', stage['dsm'], x.shape[1], stage['channels'], (h, w),
                              layout_of(x), stride=stage['stride'])
            else:
                piece = Piece('block', stage['gop'], stage['channels'], stage['channels'],
                              (h, w), layout_of(x), expansion=stage['expansion'])
            seen.append(piece.key)
        for index, stage in enumerate(arch['stages'][1:], start=1):
            module = model.stages[index]
            module.downsample.register_forward_pre_hook(
                lambda m, i, s=stage: hook(m, i, s, 'dsm'))
            for block in module.blocks:
                block.register_forward_pre_hook(lambda m, i, s=stage: hook(m, i, s, 'block'))
        stage_out = {}
        for index in (1, 2, 4, 5):
            model.stages[index].register_forward_hook(
                lambda m, i, out, k=index: stage_out.__setitem__(k, out))
        with torch.no_grad():
            model(torch.randn(1, 3, *TABLE_SIZE))
        plan = table.plan(arch)
        expected = {k: c for k, c in plan.counts.items() if k.startswith(('dsm', 'block'))}
        assert {k: seen.count(k) for k in set(seen)} == expected
        copies = sorted(k for k in plan.counts if k.startswith('copy'))
        assert copies == sorted(
            f'copy c{o.shape[1]} @{o.shape[2]}x{o.shape[3]}' for o in stage_out.values()
            if layout_of(o) == CL)


def test_a_table_is_refused_for_other_settings(table_path):
    LatencyTable.load(table_path, device='cpu', input_size=TABLE_SIZE, batch=1, threads=1)
    for wrong, word in ((dict(input_size=(64, 64)), 'input_size'), (dict(batch=2), 'batch'),
                        (dict(mode='train'), 'mode'), (dict(threads=2), 'threads'),
                        (dict(dtype='bf16'), 'dtype')):
        with pytest.raises(LatencySettingsError, match=word) as info:
            LatencyTable.load(table_path, **wrong)
        assert 'other settings' in str(info.value)


def test_an_arch_outside_the_table_names_the_missing_entry(table_path, space):
    table = LatencyTable.load(table_path)
    arch = space.base_arch.to_dict()
    arch['stages'][3]['channels'] = 40  # no width choice gives 40
    with pytest.raises(MissingEntryError) as info:
        table.predict(arch)
    assert "'dsm L 16>40 s2 @4x6 cf'" in str(info.value)
    assert 'outside the space' in str(info.value)


def test_infeasible_archs_are_reported_not_predicted(table_path, space):
    table = LatencyTable.load(table_path)
    arch = mlp_arch(space)
    reason = table.infeasible_reason(arch)
    assert 'stage 2' in reason and 'MLP' in reason and '32x32' in reason and '32x48' in reason
    with pytest.raises(InfeasibleArchError, match='MLP'):
        table.predict(arch)
    assert table.infeasible_reason(space.base_arch.to_dict()) is None


def test_mlp_archs_are_feasible_at_the_size_they_are_built_for(space):
    table = LatencyTable.build(space, input_size=(32, 32), repeats=1, warmup=0)
    arch = mlp_arch(space)
    assert table.infeasible_reason(arch) is None and table.predict(arch) > 0


def test_stopped_build_resumes_without_timing_anything_twice(tmp_path, space, monkeypatch):
    timed = []
    original = Timer.__call__

    def counting(self, step):
        timed.append(step)
        return original(self, step)
    monkeypatch.setattr(Timer, '__call__', counting)
    path = str(tmp_path / 't.json')
    first = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=2, warmup=0)
    needed = sum(first.todo().values())
    first.measure(path=path, stop_after=needed // 3)
    partial = LatencyTable.load(path, complete=False)
    assert not partial.data['complete'] and len(timed) == needed // 3
    with pytest.raises(LatencyError, match='incomplete'):
        LatencyTable.load(path)
    with pytest.raises(MissingEntryError, match='not timed yet'):
        for arch in feasible_archs(partial, space, 20):
            partial.predict(arch)
    resumed = LatencyTable.build(space, input_size=TABLE_SIZE, repeats=2, warmup=0, path=path)
    assert len(timed) == needed  # the remaining samples only
    assert resumed.data['complete'] and LatencyTable.load(path).data['complete']
    samples = [len(e['samples']) for e in resumed.data['entries'].values()]
    assert set(samples) == {2} and len(samples) == len(resumed.data['pieces'])
    with pytest.raises(LatencySettingsError):
        LatencyTable.build(space, input_size=TABLE_SIZE, repeats=2, warmup=0, batch=2,
                           path=path)


@pytest.mark.parametrize('kwargs, words', [
    (dict(device='tpu'), ['device', 'tpu']),
    (dict(device='cuda', threads=2), ['threads', 'cuda']),
    (dict(dtype='fp16'), ['fp16', 'CUDA']),
    (dict(dtype='int8'), ['dtype']),
    (dict(mode='backward'), ['mode']),
    (dict(batch=0), ['batch']),
    (dict(input_size=(800, )), ['input_size']),
    (dict(threads=0), ['threads']),
])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(LatencyError) as info:
        check_settings(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_cuda_settings_without_a_gpu(space):
    settings = check_settings(device='cuda', input_size=(800, 1333), dtype='bf16')
    assert settings['threads'] is None and settings['dtype'] == 'bf16'
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: the refusal below is for machines without one')
    with pytest.raises(LatencyError, match='no CUDA device'):
        LatencyTable.build(space, device='cuda', input_size=TABLE_SIZE, dtype='bf16')


#: Runs in a fresh process (the heap setting is process-wide): one train-mode piece whose
#: activations are a few hundred KiB each, inside ``device_settings`` as a build runs it:
#: 10 warm-up steps, then the minor page faults of each of 5 timed steps. With the heap kept
#: most steps make 0-3 faults and a few make 100-200 (the heap still grows now and then);
#: with glibc's defaults most make 700-1,700 (5 steps: 2,700-4,000 in all here).
_FAULTS_SCRIPT = """
import json, resource, torch
from uninet_mm.search.latency import Piece, Timer, build_piece, device_settings, make_input, make_step
settings = dict(device='cpu', input_size=(160, 160), batch=1, dtype='fp32', mode='train', threads=1)
piece = Piece('block', 'DWConv', 80, 80, (20, 20), expansion=6.0)
with device_settings(settings):
    step = make_step(build_piece(piece), make_input(piece, 1, 'cpu'), settings)
    for _ in range(10):
        step()
    timer, faults = Timer(settings), []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        timer(step)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    big = []  # 40 MiB per call: above glibc's largest mmap threshold (32 MiB)
    for index in range(8):  # the heap may still grow in the first calls
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(10 * 2 ** 20).fill_(1.0)
        if index >= 3:
            big.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(faults=faults, big=big)))
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings')
def test_timed_steps_reuse_the_heap_instead_of_page_faulting():
    """Pieces timed alone free everything after each step; with glibc's defaults the next step
    page-faulted its memory in again (hundreds of faults per step here, pieces up to 1.4x
    slower than inside a network). Inside device_settings the heap is kept: over 5 steps,
    fewer faults than one default step makes. Blocks above 32 MiB come from the heap too
    (mmapped afresh, a 40 MiB tensor faults ~10,000 pages per call)."""
    out = subprocess.run([sys.executable, '-c', _FAULTS_SCRIPT], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert sum(counts['faults']) < 600, counts
    assert sum(counts['big']) < 600, counts


def test_whole_network_timing_and_statistics(table_path, space):
    table = LatencyTable.load(table_path)
    archs = feasible_archs(table, space, 3)
    results = measure_networks(archs, table.settings, repeats=2)
    assert [len(r['samples']) for r in results] == [2, 2, 2]
    assert all(r['ms'] > 0 for r in results)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    stats = error_stats([105, 80, 100], [100, 100, 100])
    assert stats['within'] == pytest.approx(2 / 3) and stats['median_error'] == pytest.approx(0.05)
    assert fit_scale([1e9, 2e9, 4e9], [10, 30, 40]) == pytest.approx(1e-8)


# ------------------------------------------------------------------------------- the tool
LATENCY_TOOL = REPO / 'tools' / 'analysis_tools' / 'latency_table.py'


def latency_tool() -> dict:
    """The tool's functions, loaded afresh (tests patch its globals)."""
    return runpy.run_path(str(LATENCY_TOOL))


def tiny_search_config(tmp_path: Path) -> Path:
    """A search config: the built-in search with the tiny space."""
    config = tmp_path / 'tiny_search.py'
    config.write_text(f"_base_ = ['{SYNTHETIC}']\nsearch_space = {TINY_SPACE!r}\n")
    return config


def test_tool_build_resume_and_validate(tmp_path):
    config = tiny_search_config(tmp_path)
    out = tmp_path / 'table.json'
    tool = [sys.executable, str(LATENCY_TOOL)]
    build = tool + ['build', str(config), '--input-size', '32x48', '--repeats', '1',
                    '--warmup', '0', '--out', str(out), '--extra-archs', 'b0']
    done = subprocess.run(build, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert 'pieces' in done.stdout and 'estimated time' in done.stdout
    again = subprocess.run(build, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 2 and '--resume' in again.stderr
    resumed = subprocess.run(build + ['--resume'], capture_output=True, text=True, cwd=REPO)
    assert resumed.returncode == 0 and 'nothing left to measure' in resumed.stdout
    result = tmp_path / 'validation.json'
    valid = subprocess.run(tool + ['validate', str(config), '--table', str(out), '--num-archs',
                                   '4', '--seed', '0', '--repeats', '2', '--out', str(result)],
                           capture_output=True, text=True, cwd=REPO)
    assert valid.returncode == 0, valid.stderr
    for words in ('within +-10%', 'k x FLOPs', 'Spearman', 'repeatability', 'B0',
                  'estimated time'):
        assert words in valid.stdout
    data = json.loads(result.read_text())
    assert data['num_archs'] == 4 and len(data['rows']) == 6  # 4 sampled + B0, B1 (same arch)
    assert 'b2' in data['not_covered']  # other stage 0: not in this table
    row = data['rows'][0]
    assert row['flops_ms'] == pytest.approx(data['flops_k_ms_per_mac'] * row['flops'])
    assert data['bounds_stats'] == {}
    assert 'largest piece' in valid.stdout and 'table x c' in valid.stdout
    assert data['scaled_table']['stats']['count'] == 4
    assert sum(g['count'] for g in data['mix_stats'].values()) == 4
    for group in data['mix_stats'].values():
        assert group['table']['count'] == group['flops']['count'] == group['count']
    # a table with host times (as CUDA tables have) also reports the bounds of its pipelining
    table = json.loads(out.read_text())
    for entry in table['entries'].values():
        entry['host_ms'] = entry['ms'] / 2
    out.write_text(json.dumps(table))
    valid = subprocess.run(tool + ['validate', str(config), '--table', str(out), '--num-archs',
                                   '2', '--seed', '0', '--repeats', '1', '--out', str(result)],
                           capture_output=True, text=True, cwd=REPO)
    assert valid.returncode == 0, valid.stderr
    assert 'GPU times summed' in valid.stdout and 'pipelined' in valid.stdout
    assert set(json.loads(result.read_text())['bounds_stats']) == {'gpu_sum', 'slower_sum'}


def test_validation_splits_networks_by_their_largest_piece(table_path, space):
    """validate reports table and FLOPs errors apart for networks one piece decides (at
    800x1333: one attention DSM at stride 4, which FLOPs scale well) and for the others."""
    mix_split = latency_tool()['mix_split']
    table = LatencyTable.load(table_path)
    rows = [dict(arch=a, predicted_ms=table.predict(a), measured_ms=1.1 * table.predict(a),
                 flops_ms=1.0) for a in feasible_archs(table, space, count=4)]
    split = mix_split(table, rows)
    assert list(split) == ['largest piece < 50%'] and split['largest piece < 50%']['count'] == 4
    assert split['largest piece < 50%']['table']['median_error'] == pytest.approx(0.1 / 1.1)
    stem = next(k for k in table.plan(rows[0]['arch']).order if k.startswith('fixed'))
    table.data['entries'][stem]['ms'] *= 1e4  # now every network is mostly its stem
    assert list(mix_split(table, rows)) == ['largest piece >= 50%']


def test_validation_scales_the_table_as_the_flops_baseline_is_scaled():
    """The diagnostic row: c x table with c fitted on the measured networks, as k is for
    FLOPs. A machine 10 % faster for every network is one c, and leaves no error."""
    scaled_table_stats = latency_tool()['scaled_table_stats']
    predicted = [100.0, 200.0, 400.0, 800.0, 50.0]
    rows = [dict(predicted_ms=p, measured_ms=0.9 * p) for p in predicted]
    scaled = scaled_table_stats(rows)
    assert scaled['scale'] == pytest.approx(0.9)
    assert scaled['stats']['median_error'] == pytest.approx(0.0, abs=1e-12)
    assert scaled['stats']['within'] == 1.0
    rows[0]['measured_ms'] = 150.0  # one network the table spaces wrongly stays wrong
    scaled = scaled_table_stats(rows)
    assert scaled['scale'] == pytest.approx(0.9)
    assert scaled['stats']['within'] == pytest.approx(0.8)


def test_tool_build_stopped_by_sigterm_keeps_its_progress(tmp_path):
    """``kill`` (SIGTERM) stops a build as Ctrl-C does, keeping what it measured for
    --resume: a background build (``nohup ... &``) has SIGINT ignored."""
    import signal

    config = tiny_search_config(tmp_path)
    out = tmp_path / 'table.json'
    build = [sys.executable, str(LATENCY_TOOL), 'build', str(config), '--input-size', '32x48',
             '--repeats', '200', '--warmup', '0', '--out', str(out)]
    process = subprocess.Popen(build, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(entry.get('samples') for entry in
                                    json.loads(out.read_text())['entries'].values())):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert 'progress kept' in stderr and '--resume' in stderr
    table = json.loads(out.read_text())
    assert table['complete'] is False
    assert any(entry.get('samples') for entry in table['entries'].values())


def test_stopped_validation_resumes_without_timing_anything_twice(tmp_path, table_path,
                                                                 monkeypatch, capsys):
    """At detection sizes on a CPU a validation takes hours: with --out it keeps its progress,
    and --resume continues it with the same plan (and refuses another one)."""
    import signal
    tool = latency_tool()
    config = tiny_search_config(tmp_path)
    out = tmp_path / 'validation.json'
    command = ['validate', str(config), '--table', table_path, '--num-archs', '3',
               '--repeats', '2', '--warmup', '0', '--out', str(out)]
    timed, stop_at = [], [4]
    original = Timer.__call__

    def counting(self, step):
        if len(timed) == stop_at[0]:
            raise KeyboardInterrupt
        timed.append(step)
        return original(self, step)
    monkeypatch.setattr(Timer, '__call__', counting)
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    assert tool['main'](command) == 130
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler  # main() put it back
    stopped = json.loads(out.read_text())
    assert stopped['complete'] is False
    assert sum(map(len, stopped['progress']['samples'])) == 4
    assert tool['main'](command) == 2 and '--resume' in capsys.readouterr().err
    assert tool['main'](command + ['--seed', '1', '--resume']) == 2
    assert 'seed' in capsys.readouterr().err
    assert tool['main'](command[:-2] + ['--resume']) == 2
    assert '--resume needs --out' in capsys.readouterr().err

    stop_at[0] = None
    assert tool['main'](command + ['--resume']) == 0
    done = json.loads(out.read_text())
    networks = len(done['plan']['archs'])  # 3 sampled + the published ones the table covers
    assert networks >= 4 and len(timed) == 2 * networks  # the first 4 runs were not repeated
    assert done['complete'] and len(done['rows']) == networks
    assert [len(r['samples_ms']) for r in done['rows']] == [2] * networks
    assert done['rows'][0]['samples_ms'][0] == stopped['progress']['samples'][0][0]
    # a finished validation is reported again from its samples, without timing anything,
    # and with the load average of the sittings that timed it, not of this one
    monkeypatch.setattr(os, 'getloadavg', lambda: (9.0, 9.0, 9.0))
    assert tool['main'](command + ['--resume']) == 0
    assert len(timed) == 2 * networks
    again = json.loads(out.read_text())
    assert again['rows'] == done['rows'] and again['load_average'] == done['load_average']
    assert 9.0 not in done['load_average']
    assert again['measure_seconds'] == done['measure_seconds']
    # ... also one written before progress kept the load: its report's load average stands
    for key in ('load_average_before', 'load_average_after'):
        del done['progress'][key]
    out.write_text(json.dumps(done))
    assert tool['main'](command + ['--resume']) == 0
    assert json.loads(out.read_text())['load_average'] == done['load_average']


def test_the_tools_time_left_comes_from_the_predictions_and_samples(tmp_path, table_path,
                                                                    monkeypatch, capsys):
    """Runs differ 1000x in length at detection sizes, so the time left printed during a
    validation is the table's prediction (then the samples' median) of the runs still to go,
    not the count of runs extrapolated."""
    tool = latency_tool()
    progress = tool['Progress']('timed', interval=0.0, seconds_left=lambda: 7200.0)
    progress(1, 1000)
    assert 'about 2.0 h left' in capsys.readouterr().out
    made, seen = [], []
    real_progress = tool['Progress']

    def recording(*args, **kwargs):
        made.append(real_progress(*args, **kwargs))
        return made[-1]
    monkeypatch.setitem(tool['validate'].__globals__, 'Progress', recording)
    original = Timer.__call__

    def timing(self, step):
        seen.append(made[-1].seconds_left())
        return original(self, step)
    monkeypatch.setattr(Timer, '__call__', timing)
    out = tmp_path / 'validation.json'
    assert tool['main'](['validate', str(tiny_search_config(tmp_path)), '--table', table_path,
                         '--num-archs', '2', '--repeats', '2', '--warmup', '0', '--out',
                         str(out)]) == 0
    archs = json.loads(out.read_text())['plan']['archs']
    table = LatencyTable.load(table_path)
    # before the first run: 2 rounds + 1 FLOPs count per network, as predicted
    assert seen[0] == pytest.approx(3 * sum(map(table.predict, archs)) / 1e3)
    assert made[-1].seconds_left() == 0.0
    # the FLOPs counts after the rounds (37 min at 800x1333 on a CPU) show progress too
    assert f'FLOPs counted {len(archs)}/{len(archs)} (100 %)' in capsys.readouterr().out


# ------------------------------------------------------------------------------- the reward
def latency_cfg(table_path, **reward):
    cfg = Config.fromfile(str(SYNTHETIC))
    cfg.search_space = dict(TINY_SPACE)
    cfg.reward = dict(dict(cost='latency', target=1.0, alpha=0.07, hard=False, table=table_path),
                      **reward)
    return cfg


def fake_trial(tokens, index):
    return dict(accuracy=1.0 - 0.03 * sum(tokens) / len(tokens), flops=1e6 * (1 + sum(tokens)),
                params=1e5, seconds=0.0)


def test_latency_reward_is_recomputed_from_the_log(tmp_path, table_path):
    settings = check_search_config(latency_cfg(table_path, hard=False), max_trials=12)
    settings.search['archs_per_update'] = 4
    calls = []

    def trial(tokens, index):
        calls.append(index)
        return fake_trial(tokens, index)
    driver = run_embedded(SearchDriver(**settings.driver_kwargs()), trial, str(tmp_path))
    log = read_log(str(tmp_path))
    table = LatencyTable.load(table_path)
    assert len(log) == 12
    ok = [r for r in log if r['status'] == 'ok']
    assert ok and all(r['cost'] == 'latency' for r in log)
    for record in ok:
        assert record['latency_ms'] == pytest.approx(table.predict(record['arch']))
        assert record['reward'] == pytest.approx(
            record['accuracy'] * (record['t'] / record['latency_ms']) ** record['alpha'])
        assert record['flops'] is not None and record['params'] is not None
        assert record['latency_table']['sha256'] == table.identity['sha256']
        assert record['latency_table']['input_size'] == list(TABLE_SIZE)
    for record in log:
        if record['status'] != 'ok':  # MLP archs: infeasible, never trained
            assert 'infeasible' in record['error'] and 'MLP' in record['error']
            assert record['trial'] not in calls and record['reward'] == 0.0
    assert any(r['status'] != 'ok' for r in log)
    outputs = write_outputs(driver.history, driver.updates, str(tmp_path), k=3)
    top = json.loads(Path(outputs['top_json']).read_text())
    assert all(entry['latency_ms'] is not None for entry in top)
    header = Path(top[0]['cls_config']).read_text()
    assert 'Predicted latency' in header and '32x48' in header
    assert Path(outputs['picture']).stat().st_size > 0
    # the tool measures a finished search's top architectures whole, beside the table's numbers
    tool = [sys.executable, str(LATENCY_TOOL)]
    done = subprocess.run(tool + ['compare', '--table', table_path, '--runs', str(tmp_path),
                                  '--repeats', '1', '--out', str(tmp_path / 'compare.json')],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / 'compare.json').read_text())['rows']
    assert [r['rank'] for r in rows] == [entry['rank'] for entry in top]
    for row in rows:
        assert row['measured_ms'] > 0 and row['infeasible'] is None
        assert row['predicted_ms'] == pytest.approx(table.predict(row['arch']))


def test_tune_workers_get_the_latency_and_report_the_logged_reward(tmp_path, table_path):
    """Ray backend with the latency cost: the searcher hands each trial its predicted latency
    (workers need no table) or why it is infeasible; the reward a worker reports to Tune
    (ProxyTrial.score) is the one the driver logs."""
    from uninet_mm.search.proxy import ProxyTrial
    from uninet_mm.search.ray_tune import DriverSearcher

    settings = check_search_config(latency_cfg(table_path, hard=False), max_trials=8)
    settings.search['archs_per_update'] = 4
    searcher = DriverSearcher(SearchDriver(**settings.driver_kwargs()), str(tmp_path))
    scorer = ProxyTrial(settings.space, {}, str(tmp_path), reward=settings.reward)
    reported = {}
    for batch in range(2):
        configs = {f'{batch}-{i}': searcher.suggest(f'{batch}-{i}') for i in range(4)}
        for trial_id, config in configs.items():
            if 'infeasible' in config:
                assert 'latency_ms' not in config and 'MLP' in config['infeasible']
                result = dict(status='failed', error=config['infeasible'])
            else:
                result = fake_trial(config['tokens'], config['index'])
                assert config['latency_ms'] == pytest.approx(
                    LatencyTable.load(table_path).predict(settings.space.decode(
                        config['tokens'])))
            reported[config['index']] = scorer.score(result, config.get('latency_ms'))
            searcher.on_trial_complete(trial_id, result)
    log = read_log(str(tmp_path))
    assert sorted(r['trial'] for r in log) == list(range(8))
    for record in log:
        assert record['reward'] == pytest.approx(reported[record['trial']], rel=1e-12)
    assert {r['status'] for r in log} == {'ok', 'failed'}  # both kinds were handed out


def test_hard_latency_reward():
    reward = MnasReward(target=10.0, hard=True, cost='latency')
    assert reward(0.5, 8.0) == pytest.approx(0.5) and reward(0.5, 20.0) == pytest.approx(0.25)
    assert reward.unit == 'ms'
    with pytest.raises(ValueError, match='cost'):
        MnasReward(cost='energy')
    with pytest.raises(ValueError, match='milliseconds'):
        MnasReward(target=0, cost='latency')


def test_latency_config_errors(tmp_path, table_path):
    cases = [
        (dict(table=None), ['needs table']),
        (dict(table=str(tmp_path / 'none.json')), ['does not exist', 'build']),
        (dict(target=None), ['target', 'milliseconds']),
        (dict(table=dict(path=table_path, input_size=(64, 64))), ['other settings',
                                                                  'input_size']),
        (dict(table=dict(path=table_path, colour='red')), ['unknown keys']),
        (dict(cost='energy'), ['cost']),
    ]
    for change, words in cases:
        cfg = latency_cfg(table_path)
        cfg.reward.update(change)
        with pytest.raises(SearchConfigError) as info:
            check_search_config(cfg)
        for word in words:
            assert word in str(info.value), (change, str(info.value))
    # a table of another space
    cfg = latency_cfg(table_path)
    cfg.search_space['widths'] = (0.5, 1.0)
    with pytest.raises(SearchConfigError, match='does not cover'):
        check_search_config(cfg)


def test_table_built_on_first_use(tmp_path, space):
    from uninet_mm.search.config import prepare_latency_table
    path = str(tmp_path / 'first_use.json')
    cfg = latency_cfg(dict(path=path, device='cpu', input_size=TABLE_SIZE, threads=1,
                           repeats=1, warmup=0))
    settings = check_search_config(cfg)
    assert settings.latency is None and settings.latency_build['path'] == path
    with pytest.raises(SearchConfigError, match='not built'):
        settings.driver_kwargs()
    table = prepare_latency_table(settings)
    assert Path(path).is_file() and not Path(path + '.partial').exists()
    assert SearchDriver(**settings.driver_kwargs()).latency is table
    assert check_search_config(cfg).latency.path == path  # the file is used from now on


def test_old_search_states_still_resume(tmp_path):
    """A state written before the latency cost (no reward.cost, no latency_table) loads."""
    settings = check_search_config(Config.fromfile(str(SYNTHETIC)), max_trials=4)
    driver = SearchDriver(**settings.driver_kwargs())
    state = driver.state_dict()
    state['reward'].pop('cost')
    state.pop('latency_table')
    SearchDriver(**settings.driver_kwargs()).load_state_dict(state)


def test_a_resumed_build_is_estimated_from_its_samples(space):
    """Pieces timed in an earlier pass cost what their samples say (multiply-adds can be off by
    10x), with one warm-up per pass still to run; the untimed ones fall back to multiply-adds."""
    table = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=4, warmup=1, passes=2)
    keys = list(table.data['pieces'])
    for i, key in enumerate(keys[1:]):  # the first pass done for all pieces but one
        table.data['entries'][key] = dict(samples=[10.0 + i, 30.0 + i])
    # throughput so high that the untimed piece costs only the overhead per call
    estimate = table.estimate_seconds(throughput_gmacs=1e12, overhead_ms=1.0)
    started = sum((20.0 + i) * (2 + 1) for i in range(len(keys) - 1))  # 2 samples + 1 warm-up
    untimed = 1.0 * (4 + 2)  # 4 samples + 1 warm-up in each of 2 passes
    assert estimate == pytest.approx((started + untimed) / 1e3)


def test_passes_spread_each_piece_over_the_build(space):
    """With 2 passes every piece gets its first sample before any gets its second."""
    table = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=2, warmup=0, passes=2)
    pieces = len(table.data['pieces'])
    table.measure(stop_after=pieces)
    samples = [len(e['samples']) for e in table.data['entries'].values()]
    assert len(samples) == pieces and set(samples) == {1}


def test_pieces_whose_passes_disagree_are_reported(tmp_path, space, capsys):
    """A piece's passes span the build (days, when it was resumed): a piece whose passes
    disagree by over 1.5x is named, by the tool too (depthwise blocks moved 2.8x between
    sessions on a shared VM, attention a few per cent)."""
    table = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=6, warmup=0, passes=3)
    keys = list(table.data['pieces'])
    for key in keys:  # within noise: 1.2x between passes
        table.data['entries'][key] = dict(samples=[10.0, 10.4, 12.0, 12.4, 11.0, 11.2])
    table.data['entries'][keys[1]]['samples'] = [20.0, 21.0, 20.5, 22.0, 10.0, 10.5]
    table.use_statistic('median').data['complete'] = True
    drifted = table.drifted()
    assert list(drifted) == [keys[1]] and drifted[keys[1]] == pytest.approx((10.25, 21.25))
    path = tmp_path / 'drifted.json'
    table.save(str(path))
    tool = latency_tool()
    assert tool['main'](['build', str(tiny_search_config(tmp_path)), '--input-size', '32x48',
                         '--repeats', '6', '--passes', '3', '--warmup', '0', '--extra-archs',
                         '--out', str(path), '--resume']) == 0
    out = capsys.readouterr().out
    assert 'nothing left to measure' in out
    assert f'1 of {len(keys)} pieces took over 1.5x longer' in out
    assert f'{keys[1]} 10.25-21.25 ms' in out


def test_statistic_of_the_samples(space, tmp_path):
    """Forward tables keep the median of a piece's samples, train tables the minimum; a table
    re-summarises its stored samples with another statistic without measuring again, and so
    does a build that continues from a saved one."""
    forward = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=3, warmup=0, passes=1)
    assert forward.statistic == 'median'
    assert LatencyTable.plan_build(space, input_size=TABLE_SIZE, mode='train', repeats=1,
                                   warmup=0).statistic == 'min'
    forward.measure()
    entries = forward.data['entries']
    assert entries and all(len(e['samples']) == 3 for e in entries.values())
    for entry in entries.values():
        assert entry['ms'] == pytest.approx(sorted(entry['samples'])[1])
    path = str(tmp_path / 'partial.json')
    forward.save(path)
    minimum = LatencyTable.plan_build(space, input_size=TABLE_SIZE, repeats=3, warmup=0,
                                      passes=1, statistic='min')
    minimum.continue_from(LatencyTable.load(path, complete=False))
    assert minimum.statistic == 'min'
    for key, entry in entries.items():
        assert minimum.data['entries'][key]['ms'] == pytest.approx(min(entry['samples']))
    assert minimum.identity['statistic'] == 'min'
    forward.use_statistic('min')
    assert forward.identity['sha256'] == minimum.identity['sha256']
    with pytest.raises(LatencyError, match='statistic'):
        forward.use_statistic('mean')
    results = measure_networks([space.decode(space.sample(random.Random(1)))],
                               dict(forward.settings), repeats=3, statistic='min')
    assert results[0]['ms'] == min(results[0]['samples'])


def test_a_search_config_sets_the_statistic(tmp_path, table_path):
    settings = check_search_config(latency_cfg(dict(path=table_path, statistic='min')))
    assert settings.latency.statistic == 'min'
    with pytest.raises(SearchConfigError, match='statistic'):
        check_search_config(latency_cfg(dict(path=str(tmp_path / 'new.json'),
                                             input_size=TABLE_SIZE, statistic='mean')))


def test_a_table_timed_with_large_blocks_mmapped_is_flagged(table_path, tmp_path):
    """Tables timed before mmap was turned off over-time pieces with maps above 32 MiB."""
    data = json.loads(Path(table_path).read_text())
    old = tmp_path / 'old_heap.json'
    data['environment']['heap'] = 'kept (glibc mallopt: no trim, mmap threshold 32 MiB)'
    old.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match='rebuild it'):
        LatencyTable.load(str(old))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        LatencyTable.load(table_path)


def test_a_validation_sample_table_times_only_its_networks_pieces(tmp_path, table_path,
                                                                  monkeypatch, capsys):
    """``build --validation-sample N --seed S`` times only what ``validate --num-archs N --seed
    S`` runs: validating a device at 800x1333 costs a fraction of a full build. Such a table
    validates with its own sample only, resumes only as such, and a search refuses it."""
    tool = latency_tool()
    config = tiny_search_config(tmp_path)
    out = tmp_path / 'sample.json'
    build = ['build', str(config), '--input-size', '32x48', '--repeats', '1', '--warmup', '0',
             '--out', str(out), '--extra-archs', 'b0', '--validation-sample', '2', '--seed', '3']
    assert tool['main'](build) == 0
    table = LatencyTable.load(str(out))
    full = LatencyTable.load(table_path)
    assert table.data['validation_sample'] == dict(num_archs=2, seed=3)
    assert 0 < len(table.data['pieces']) < len(full.data['pieces'])
    assert set(table.data['entries']) == set(table.data['pieces'])
    assert 'validation sample' in capsys.readouterr().out
    assert tool['main'](build[:-1] + ['4', '--resume']) == 2
    assert '--validation-sample 2 --seed 3' in capsys.readouterr().err

    validate = ['validate', str(config), '--table', str(out), '--num-archs', '2', '--seed', '3',
                '--repeats', '1', '--warmup', '0']
    result = tmp_path / 'validation.json'
    assert tool['main'](validate + ['--out', str(result)]) == 0
    rows = json.loads(result.read_text())['rows']
    assert [r['predicted_ms'] for r in rows] == [table.predict(r['arch']) for r in rows]
    assert [r['name'] for r in rows[2:]] == ['b0', 'b1']  # B0's pieces are in the space's
    capsys.readouterr()
    assert tool['main'](validate[:-6] + ['--num-archs', '3'] + validate[-4:]) == 2
    assert 'validate with those' in capsys.readouterr().err
    with pytest.raises(SearchConfigError, match='does not cover'):
        check_search_config(latency_cfg(str(out)))

    # FLOPs counted by that validation are taken, not counted again (minutes at 800x1333)
    def no_counting(*args):
        raise AssertionError('FLOPs counted again')
    monkeypatch.setitem(tool['validate'].__globals__, 'count_flops', no_counting)
    again = tmp_path / 'again.json'
    assert tool['main'](validate + ['--out', str(again), '--flops-from', str(result)]) == 0
    assert ([r['flops'] for r in json.loads(again.read_text())['rows']]
            == [r['flops'] for r in rows])
    other = json.loads(result.read_text())
    other['identity']['input_size'] = [64, 64]
    (tmp_path / 'other.json').write_text(json.dumps(other))
    capsys.readouterr()
    assert tool['main'](validate + ['--flops-from', str(tmp_path / 'other.json')]) == 2
    assert 'input_size' in capsys.readouterr().err
