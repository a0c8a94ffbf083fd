"""The searchers behind SearchDriver (ppo, random, evolution, nsga2) on fast fake trials: the
same outputs for every searcher, each searcher's own rules, kill + resume for every searcher,
parallel proposals, config errors before any trial, the visualizer's statistics."""
import json
import random
from collections import Counter

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from .test_search_loop import LOG_FIELDS, Killed, synthetic_cfg
from .test_tools import load_tool
from uninet_mm.search.config import SearchConfigError, check_search_config
from uninet_mm.search.driver import SearchDriver
from uninet_mm.search.embedded import run_embedded
from uninet_mm.search.records import read_log
from uninet_mm.search.report import pareto_records, record_cost
from uninet_mm.search.runner import run_search
from uninet_mm.search.searchers import SEARCHERS, SearcherError
from uninet_mm.search.searchers.evolution import mutate, tournament
from uninet_mm.search.searchers.random_search import RandomSearcher

pytestmark = pytest.mark.usefixtures('one_thread')

search_main = load_tool('search.py')['main']

#: Small populations so that 12-16 fake trials reach the searchers' second phase.
SMALL = dict(ppo=dict(type='ppo'), random=dict(type='random'),
             evolution=dict(type='evolution', population_size=4, sample_size=2),
             nsga2=dict(type='nsga2', population_size=4))


def optimum_trial(tokens, index):
    """Known optimum: accuracy rises with the first decision's token and falls with the
    others; FLOPs grow with the first five tokens (so accuracy and cost trade off)."""
    accuracy = 0.5 + 0.1 * tokens[0] - 0.01 * sum(tokens[1:]) / len(tokens)
    return dict(accuracy=accuracy, flops=5e6 * (1 + sum(tokens[:5])), params=1e5 + index,
                seconds=0.0)


def cfg_for(searcher, tmp_path, **search):
    cfg = synthetic_cfg(**search)
    cfg.searcher = dict(SMALL[searcher])
    cfg.proxy.data.update(root=str(tmp_path / 'data'), num_train=5, num_val=5)
    return cfg


def make_driver(searcher, max_trials=12, archs_per_update=4, failure_reward=0.0):
    cfg = synthetic_cfg(archs_per_update=archs_per_update, failure_reward=failure_reward)
    cfg.searcher = dict(SMALL[searcher])
    settings = check_search_config(cfg, max_trials=max_trials)
    return SearchDriver(**settings.driver_kwargs())


# ------------------------------------------------------------------------------ one interface
@pytest.mark.parametrize('searcher', list(SEARCHERS))
def test_every_searcher_writes_the_same_outputs(tmp_path, searcher):
    work = tmp_path / 'work'
    out = run_search(cfg_for(searcher, tmp_path), str(work), max_trials=16,
                     trial_fn=optimum_trial, searcher=searcher)
    log = read_log(str(work))
    assert [r['trial'] for r in log] == list(range(16))
    for record in log:
        assert set(LOG_FIELDS) | {'searcher'} <= set(record)
        assert record['searcher'] == searcher and record['status'] == 'ok'
    for name in ('search_state.pth', 'top5.json', 'pareto.json', 'search.png', 'search.log',
                 'configs/top1_uninet_in1k.py', 'vis/vis_data/scalars.json'):
        assert (work / name).is_file(), name
    top = json.loads((work / 'top5.json').read_text())
    assert [e['rank'] for e in top] == [1, 2, 3, 4, 5]
    assert top[0]['reward'] == max(r['reward'] for r in log)
    assert out['driver'].searcher == searcher and out['driver'].updates
    state = torch.load(work / 'search_state.pth', weights_only=True)
    assert SearchDriver.saved_searcher(state) == searcher


def test_random_is_uniform_over_every_decision():
    num_choices = [3, 5, 2]
    searcher = RandomSearcher(num_choices, seed=0)
    tokens = [p['tokens'] for p in searcher.propose(3000)]
    # chi-square against uniform, per decision; 99.9 % points for 2, 4 and 1 degrees of freedom
    critical = {3: 13.82, 5: 18.47, 2: 10.83}
    for position, n in enumerate(num_choices):
        counts = Counter(t[position] for t in tokens)
        assert sorted(counts) == list(range(n))
        expected = len(tokens) / n
        chi2 = sum((counts[c] - expected) ** 2 / expected for c in range(n))
        assert chi2 < critical[n], (position, counts)


# ------------------------------------------------------------------------------ evolution
@given(st.lists(st.integers(2, 6), min_size=1, max_size=12).flatmap(
    lambda choices: st.tuples(st.just(choices),
                              st.tuples(*[st.integers(0, n - 1) for n in choices]),
                              st.integers(0, 2 ** 32 - 1))))
def test_mutation_changes_exactly_one_decision_to_a_valid_other_choice(case):
    num_choices, tokens, seed = case
    child = mutate(list(tokens), num_choices, random.Random(seed))
    changed = [i for i, (a, b) in enumerate(zip(tokens, child)) if a != b]
    assert len(changed) == 1 and len(child) == len(tokens)
    assert all(0 <= t < n for t, n in zip(child, num_choices))


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=15),
       st.integers(1, 6), st.integers(0, 1000))
def test_tournament_picks_the_best_successful_member_of_its_sample(members, size, seed):
    population = [dict(index=i, tokens=[i], reward=r, status='ok' if ok else 'failed')
                  for i, (r, ok) in enumerate(members)]
    sample = random.Random(seed).sample(population, min(size, len(population)))
    parent = tournament(population, size, random.Random(seed))
    alive = [m for m in sample if m['status'] == 'ok']
    if not alive:
        assert parent is None
    else:
        assert parent['status'] == 'ok'
        assert parent['reward'] == max(m['reward'] for m in alive)


def test_evolution_population_ages_and_children_are_one_mutation_from_a_parent():
    def flaky(tokens, index):
        return (dict(status='failed', error='injected') if index % 5 == 3
                else optimum_trial(tokens, index))

    # failures get a reward above any real one: were they allowed as parents, they would win
    driver = make_driver('evolution', max_trials=30, failure_reward=5.0)
    strategy = driver.strategy
    parents = {}
    observed = []
    while not driver.finished:
        proposal = driver.propose()
        entry = next(e for e in driver.batch if e['index'] == proposal['index'])
        parents[proposal['index']] = (entry['parent'], proposal['tokens'])
        driver.complete(proposal['index'], flaky(proposal['tokens'], proposal['index']))
        observed.append(proposal['index'])
        assert len(strategy.population) <= 4
        # oldest removed: the population is the last (up to) 4 scored trials, in order
        assert [m['index'] for m in strategy.population] == observed[-4:]
    tokens = {r['trial']: r['tokens'] for r in driver.history}
    status = {r['trial']: r['status'] for r in driver.history}
    children = {i: p for i, (p, _) in parents.items() if p is not None}
    assert all(parents[i][0] is None for i in range(4))  # the initial population is random
    assert len(children) >= 20
    for child, parent in children.items():
        assert status[parent] == 'ok', 'a failed trial was a parent'
        assert sum(a != b for a, b in zip(tokens[child], tokens[parent])) == 1
    stats = driver.updates[-1]
    assert stats['searcher'] == 'evolution' and stats['population'] == 4
    assert 'population_best' in stats and stats['population_failed'] >= 0


# ------------------------------------------------------------------------------ NSGA-II
def test_nsga2_returns_a_non_dominated_front(tmp_path):
    work = tmp_path / 'work'
    out = run_search(cfg_for('nsga2', tmp_path), str(work), max_trials=24,
                     trial_fn=optimum_trial, searcher='nsga2')
    front = json.loads((work / 'pareto.json').read_text())
    assert front
    points = [(e['accuracy'], e['flops']) for e in front]
    for a in points:  # no front member dominates another
        for b in points:
            assert not (b != a and b[0] >= a[0] and b[1] <= a[1])
    log = read_log(str(work))
    for record in log:  # every trial is dominated by (or equal to) a front member
        assert any(a >= record['accuracy'] and c <= record['flops'] for a, c in points)
    # the front from the log is optuna's own
    strategy = out['driver'].strategy
    best = {(t.values[0], t.values[1]) for t in strategy.study.best_trials}
    assert set(points) <= best
    assert {record_cost(r) for r in pareto_records(log)} == {c for _, c in best}
    assert [t.number for t in strategy.study.trials] == list(range(24))


def test_nsga2_tells_failed_trials_as_failed(tmp_path):
    from optuna.trial import TrialState

    def flaky(tokens, index):
        if index == 2:
            raise RuntimeError('injected')
        return optimum_trial(tokens, index)

    driver = run_embedded(make_driver('nsga2', max_trials=6), flaky, str(tmp_path))
    states = [t.state for t in driver.strategy.study.trials]
    assert states[2] == TrialState.FAIL and states.count(TrialState.COMPLETE) == 5


# ------------------------------------------------------------------------------ parallel
@pytest.mark.parametrize('searcher, limit', [('ppo', 4), ('random', 12), ('evolution', 4),
                                             ('nsga2', 4)])
def test_proposals_out_at_once(searcher, limit):
    """How many trials may run at once before results must come back: PPO a batch, random
    any, evolution the initial population, NSGA-II a population."""
    driver = make_driver(searcher, max_trials=12, archs_per_update=4)
    out = []
    while (proposal := driver.propose(f't{len(out)}')) is not None:
        out.append(proposal)
    assert len(out) == limit
    assert len({p['index'] for p in out}) == limit
    driver.complete(out[0]['index'], optimum_trial(out[0]['tokens'], out[0]['index']))
    if searcher in ('random', 'ppo', 'evolution'):
        assert driver.propose('late') is None  # PPO: batch; evolution: initial population
    else:
        assert driver.propose('late') is not None  # NSGA-II: a slot came free
    for proposal in out[1:]:
        driver.complete(proposal['index'], optimum_trial(proposal['tokens'], proposal['index']))
    if searcher != 'random':
        assert driver.propose('next') is not None


# ------------------------------------------------------------------------------ resume
@pytest.mark.parametrize('searcher', list(SEARCHERS))
def test_kill_and_resume_continues_every_searcher_exactly(tmp_path, searcher):
    """Killed in the middle of a trial and resumed: every architecture scored exactly once,
    the same architectures in the same order as an uninterrupted run with the same seed (every
    searcher here is deterministic given its seed), the same statistics."""
    reference = run_embedded(make_driver(searcher, 14), optimum_trial, str(tmp_path / 'ref'))

    def killed_at_9(tokens, index):
        if index == 9:
            raise Killed()
        return optimum_trial(tokens, index)

    work = str(tmp_path / 'run')
    with pytest.raises(Killed):
        run_embedded(make_driver(searcher, 14), killed_at_9, work)
    assert [r['trial'] for r in read_log(work)] == list(range(9))
    calls = []

    def counted(tokens, index):
        calls.append(index)
        return optimum_trial(tokens, index)

    resumed = make_driver(searcher, 14)
    resumed.load(work)
    run_embedded(resumed, counted, work)
    assert calls == list(range(9, 14))  # nothing scored twice, nothing lost
    log = read_log(work)
    assert [r['trial'] for r in log] == list(range(14))
    assert [r['tokens'] for r in log] == [r['tokens'] for r in reference.history]
    assert ([{k: v for k, v in u.items() if k not in ('loss', 'advantage')}
             for u in resumed.updates]
            == [{k: v for k, v in u.items() if k not in ('loss', 'advantage')}
                for u in reference.updates])


def test_resume_with_another_searcher_is_refused_before_any_trial(tmp_path):
    work = tmp_path / 'work'
    run_search(cfg_for('random', tmp_path), str(work), max_trials=3, trial_fn=optimum_trial,
               searcher='random')
    before = (work / 'search_log.jsonl').read_text()
    with pytest.raises(SearcherError, match="ran searcher 'random', not 'evolution'"):
        run_search(cfg_for('evolution', tmp_path), str(work), max_trials=6, resume=True,
                   trial_fn=optimum_trial, searcher='evolution')
    assert (work / 'search_log.jsonl').read_text() == before
    cfg_file = tmp_path / 'cfg.py'
    cfg_for('ppo', tmp_path).dump(str(cfg_file))
    assert search_main([str(cfg_file), '--work-dir', str(work), '--resume', '--searcher',
                        'ppo']) == 2
    assert (work / 'search_log.jsonl').read_text() == before


# ------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize('searcher, words', [
    ('bayes', ['unknown searcher', "'bayes'", 'nsga2']),
    (dict(type='evolution', population_size=1), ['population_size', 'int >= 2']),
    (dict(type='evolution', population_size=4, sample_size=5), ['sample_size', 'exceed']),
    (dict(type='evolution', tournament=3), ['no settings', 'tournament', 'sample_size']),
    (dict(type='nsga2', crossover_prob=1.5), ['crossover_prob', '[0, 1]']),
    (dict(type='nsga2', population_size=True), ['population_size']),
    (dict(type='random', population_size=4), ['random', 'no settings']),
    (dict(type='ppo', lr=1e-3), ['ppo', 'no settings']),
    (3, ['searcher must be a name']),
])
def test_bad_searcher_configs_stop_before_any_trial(tmp_path, searcher, words):
    cfg = cfg_for('ppo', tmp_path)
    cfg.searcher = searcher
    with pytest.raises(SearchConfigError) as info:
        run_search(cfg, str(tmp_path / 'work'), trial_fn=optimum_trial)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / 'work' / 'search_state.pth').exists()


def test_searcher_flag_overrides_the_type_and_keeps_matching_settings(tmp_path):
    cfg = cfg_for('evolution', tmp_path)
    assert check_search_config(cfg, searcher='evolution').searcher == dict(
        type='evolution', population_size=4, sample_size=2)
    assert check_search_config(cfg, searcher='nsga2').searcher['population_size'] == 20
    assert check_search_config(synthetic_cfg()).searcher == dict(type='ppo')
    with pytest.raises(SystemExit):
        search_main([str(tmp_path / 'cfg.py'), '--work-dir', 'x', '--searcher', 'grid'])


# ------------------------------------------------------------------------------ records
def test_ppo_statistics_reach_the_visualizer(tmp_path):
    driver = run_embedded(make_driver('ppo', 8), optimum_trial, str(tmp_path))
    lines = [json.loads(line) for line in
             (tmp_path / 'vis' / 'vis_data' / 'scalars.json').read_text().splitlines()]
    assert [line['step'] for line in lines] == [0, 1]
    for key in ('mean_reward', 'baseline', 'entropy', 'clip_fraction', 'approx_kl'):
        assert [line[f'ppo/{key}'] for line in lines] == pytest.approx(
            [u[key] for u in driver.updates])
    assert list((tmp_path / 'vis' / 'vis_data').glob('events.out.tfevents.*'))


def test_optional_result_keys_are_copied_into_the_record():
    driver = make_driver('random', 2)
    first, second = driver.propose(), driver.propose()
    record = driver.complete(first['index'], dict(optimum_trial(first['tokens'], 0),
                                                  early_stopped=True, epochs=2))
    assert record['early_stopped'] is True and record['epochs'] == 2
    record = driver.complete(second['index'], optimum_trial(second['tokens'], 1))
    assert 'early_stopped' not in record and 'epochs' not in record


def test_a_saved_version_1_state_resumes_as_ppo(tmp_path):
    """States written before the searchers existed (PPO only, version 1) still resume."""
    driver = make_driver('ppo', 8)
    run_embedded(driver, optimum_trial, str(tmp_path))
    state = driver.state_dict()
    inner = state.pop('searcher')['state']
    old = dict(state, version=1, ppo=inner['ppo'], generator=inner['generator'])
    resumed = make_driver('ppo', 8)
    resumed.load_state_dict(old)
    assert resumed.ppo.baseline == driver.ppo.baseline and resumed.finished
    with pytest.raises(SearcherError, match="ran searcher 'ppo'"):
        make_driver('random', 8).load_state_dict(old)


@pytest.mark.parametrize('searcher', ['random', 'evolution', 'nsga2'])
def test_tune_searcher_runs_every_searcher_and_survives_pickling(tmp_path, monkeypatch,
                                                                 searcher):
    """The Ray backend's Tune searcher around the same driver (no cluster needed): several
    trials out at once, each architecture handed out once; a pickled and restored searcher
    (what Tuner.restore does after a resume reloaded the driver from search_state.pth) keeps
    the running trials and the searcher's state."""
    import pickle

    from uninet_mm.search import ray_tune

    cfg = synthetic_cfg()
    cfg.searcher = dict(SMALL[searcher])
    settings = check_search_config(cfg, max_trials=10)
    tune_searcher = ray_tune.DriverSearcher(SearchDriver(**settings.driver_kwargs()),
                                            str(tmp_path))
    running = {}
    for step in range(40):
        config = tune_searcher.suggest(f't{step}')
        if config == tune_searcher.FINISHED:
            break
        if config is not None:
            running[f't{step}'] = config
        if len(running) >= 3 or config is None:  # three trials run at once
            trial_id = sorted(running)[0]
            done = running.pop(trial_id)
            tune_searcher.on_trial_complete(trial_id, optimum_trial(done['tokens'],
                                                                    done['index']))
        if step == 5:
            tune_searcher.save(str(tmp_path / 'searcher.pth'))
            tune_searcher = pickle.loads(pickle.dumps(tune_searcher))
            resumed = SearchDriver(**settings.driver_kwargs())
            resumed.load(str(tmp_path))
            monkeypatch.setitem(ray_tune._DRIVERS, ray_tune._key(str(tmp_path)), resumed)
            tune_searcher.restore(str(tmp_path / 'searcher.pth'))
    assert config == tune_searcher.FINISHED
    for trial_id, done in running.items():  # FINISHED: no more suggestions, the rest run on
        tune_searcher.on_trial_complete(trial_id, optimum_trial(done['tokens'], done['index']))
    log = read_log(str(tmp_path))
    assert sorted(r['trial'] for r in log) == list(range(10))
    assert len({tuple(r['tokens']) for r in log}) >= 5
    assert tune_searcher.driver.searcher == searcher
