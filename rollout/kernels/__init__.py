"""Attention kernels of the paged engine: a pure-torch reference (the CPU path) beside each
Triton kernel (opt-in, GPU), compared by tests/rollout/test_paged_decode_kernel.py."""
