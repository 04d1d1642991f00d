"""CPU kernels of the paged engine's decode step, in C (built on first use by build.py).

attention.c/.py: paged decode attention; elementwise.c/.py: the residual + RMSNorm, RoPE
+ KV write and SiLU-gate work between the matmuls. Each is tested against its torch
reference (tests/rollout/test_cpu_kernels.py); rollout/paged/decode_cpu.py puts them
together into the CPU decode step.
"""
