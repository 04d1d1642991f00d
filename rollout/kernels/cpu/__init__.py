"""CPU kernels of the paged engine (EngineConfig.decode_kernel=cpu), in C, built on first
use by build.py.

attention.c/.py: paged decode attention; elementwise.c/.py: the residual + RMSNorm, RoPE
+ KV write and SiLU gate between the matmuls (used through rollout/paged/ops.py's
CpuOps); sampling.c/.py: the next token of each row (used by rollout/paged/sampler.py).
Each is tested against its torch reference in tests/rollout/test_cpu_kernels.py.
"""
