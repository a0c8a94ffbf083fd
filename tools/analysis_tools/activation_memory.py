"""Activation memory a UniNet keeps for backward, per image (what decides the batch per GPU).

    python tools/analysis_tools/activation_memory.py b5 384 b6 448 [--dtype float32]

Builds the classifier backbone (with its head conv) in training mode as it is (the plain model:
NCHW, no activation checkpointing), runs one image forward with autograd's
saved-tensor hooks, and sums the distinct storages autograd keeps. This is a lower bound of the
training memory of that many images; backward's temporaries, the weights, their gradients and
the optimizer state come on top.
"""
import argparse

import torch

from uninet_mm import UniNet


def saved_bytes_per_image(arch: str, size: int, dtype: torch.dtype = torch.float32) -> int:
    model = UniNet(arch, out_indices=(6, ), with_head_conv=True).to(dtype).train()
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(1, 3, size, size, dtype=dtype))
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('pairs', nargs='+', help='ARCH SIZE pairs, e.g. b5 384 b6 448')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error('give ARCH SIZE pairs')
    dtype = getattr(torch, args.dtype)
    for arch, size in zip(args.pairs[::2], args.pairs[1::2]):
        mib = saved_bytes_per_image(arch, int(size), dtype) / 2**20
        print(f'UniNet-{arch.upper()} at {size}x{size}, {args.dtype}: {mib:.0f} MiB of saved '
              f'activations per image; 64 GiB hold {int(64 * 1024 // mib)} images')


if __name__ == '__main__':
    main()
