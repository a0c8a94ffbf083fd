# The built-in search (configs/search/uninet_search_synthetic.py: same space, proxy task,
# controller, PPO and seed) with the latency reward: r = a * (T / latency)^alpha, the latency
# being that of the backbone at a detection size, 480x800 (H x W), batch 1, fp32, forward,
# on this machine's CPU at one thread, predicted by a latency table of the space
# (uninet_mm/search/latency.py). The table is built on first use (921 pieces: 16.6 min on
# a 2-core AMD EPYC shared with other jobs at load 4-9; the search says how many pieces
# and about how long before it starts), or beforehand with
#   python tools/analysis_tools/latency_table.py build \
#       configs/search/uninet_search_synthetic_latency.py --device cpu --input-size 480x800 \
#       --threads 1 --out work_dirs/latency/synthetic_cpu1_fp32_480x800.json
# and then:
#   python tools/search.py configs/search/uninet_search_synthetic_latency.py --work-dir DIR
# FLOPs and params stay in the log; every log line has latency_ms and the table's identity.
# Architectures with MLP stages cannot run at 480x800 (their token mixing is built for the
# 32x32 proxy): they are not trained and fail with the reason (reward failure_reward = 0).
_base_ = ['./uninet_search_synthetic.py']

reward = dict(
    cost='latency',
    # T (ms) near the geometric middle of what this space's runnable networks take at 480x800
    # on the machine of docs/latency.md's numbers (55 ms to 8.3 s predicted for the 688 runnable
    # ones among 2,000 sampled architectures, 2-core AMD EPYC, 1 thread). With the soft reward
    # T scales every reward alike and does not change which network wins; it matters with
    # hard=True (MnasNet's hard constraint). On another machine, look at the latencies the
    # table predicts (the validate tool prints some) and set T among them.
    target=500.0,
    alpha=0.07,
    hard=False,
    table=dict(path='work_dirs/latency/synthetic_cpu1_fp32_480x800.json', device='cpu',
               input_size=(480, 800), batch=1, dtype='fp32', mode='forward', threads=1))
