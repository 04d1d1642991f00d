"""Training kernels of the learner: Triton kernels (opt-in, GPU) beside the pure-torch
references in learner/ that are the CPU path, compared by tests on tiny shapes.

fused_logprob_triton.py: the `backend="triton"` path of learner/fused_logprob.py.
"""
