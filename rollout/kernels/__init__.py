"""Attention kernels of the paged engine: a pure-torch reference (any device) beside the
C kernels of the CPU path (cpu/, compared by tests/rollout/test_cpu_kernels.py) and the
Triton kernel (opt-in, GPU; tests/rollout/test_paged_decode_kernel.py)."""
