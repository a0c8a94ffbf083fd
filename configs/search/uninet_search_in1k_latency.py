# The paper's search (configs/search/uninet_search_in1k.py: same space, proxy task on
# ImageNet-1K, controller, PPO, 2,000 architectures) with the latency reward instead of FLOPs:
# r = a * (T / latency)^0.07, the latency being that of the backbone as a detector runs it,
# at 800x1333 (H x W), batch 1, bf16 autocast, forward, on YOUR GPU, predicted by a latency
# table of the space measured on that GPU (CUDA events after warm-up).
#
# 1. Measure the target T on the GPU you deploy on, e.g. Swin-T's backbone at the same
#    settings (see docs/latency.md):
#      python tools/analysis_tools/benchmark_backbone.py --device cuda --amp bf16 \
#          --models swin_t --sizes 800x1333 --batch 1 --no-memory
#    and put its forward ("fwd") time in ms below as reward.target (or pass
#    --cfg-options reward.target=T to tools/search.py).
# 2. Build the table on that GPU (the search builds it on first use too, after saying how
#    many pieces and about how long; MLP stages cannot run at 800x1333 and are left out):
#      python tools/analysis_tools/latency_table.py build configs/search/uninet_search_in1k_latency.py \
#          --device cuda --dtype bf16 --input-size 800x1333 --batch 1 \
#          --out work_dirs/latency/in1k_cuda_bf16_800x1333.json
#    and check it: python tools/analysis_tools/latency_table.py validate \
#          configs/search/uninet_search_in1k_latency.py \
#          --table work_dirs/latency/in1k_cuda_bf16_800x1333.json --num-archs 30 --seed 0
# 3. Run the search as the FLOPs one (tools/search.py ... --backend ray).
_base_ = ['./uninet_search_in1k.py']

reward = dict(
    cost='latency',
    # REQUIRED: your measured target in milliseconds (step 1). Left unset on purpose: the
    # search stops with a message saying how to measure it.
    target=None,
    alpha=0.07,
    hard=False,
    table=dict(path='work_dirs/latency/in1k_cuda_bf16_800x1333.json', device='cuda',
               input_size=(800, 1333), batch=1, dtype='bf16', mode='forward'))
