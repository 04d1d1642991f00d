"""Fixtures shared across the test packages."""
from __future__ import annotations

import pytest


@pytest.fixture
def keep_torch_threads():
    """Restore torch's thread count after a test (benchmarks set their own)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
