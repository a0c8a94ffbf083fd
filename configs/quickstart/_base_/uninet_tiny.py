# The small UniNet of the quickstart configs (picked as ``_base_.uninet_tiny``): DWConv stages,
# then self-attention stages at strides 16 and 32; sized to train from scratch on a CPU.
uninet_tiny = dict(
    stem_channels=16,
    head_channels=1280,
    stages=[
        dict(gop='DWConv', dsm=None, expansion=1, channels=16, repeats=1, stride=1),
        dict(gop='DWConv', dsm='L', expansion=4, channels=32, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=4, channels=48, repeats=2, stride=2),
        dict(gop='DWConv', dsm='L', expansion=3, channels=64, repeats=2, stride=2),
        dict(gop='SA', dsm='LG', expansion=2, channels=64, repeats=1, stride=1),
        dict(gop='SA', dsm='LG', expansion=3, channels=96, repeats=2, stride=2),
    ])
