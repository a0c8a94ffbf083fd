from .attention import SelfAttention, TokenMixingMLP, WindowSelfAttention, multi_head_attention
from .common import DropPath, build_norm2d
from .conv_block import ConvBlock, ConvNormAct
from .downsample import (DOWNSAMPLE_MODULES, GlobalDownsample, LocalDownsample,
                         LocalGlobalDownsample)
from .transformer_block import TransformerBlock

__all__ = [
    'SelfAttention', 'TokenMixingMLP', 'WindowSelfAttention', 'multi_head_attention',
    'ConvNormAct', 'DropPath', 'build_norm2d', 'ConvBlock', 'DOWNSAMPLE_MODULES',
    'GlobalDownsample', 'LocalDownsample', 'LocalGlobalDownsample', 'TransformerBlock'
]
