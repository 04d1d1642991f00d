"""Fixtures of the `vllm` backend's tests: the tiny preset, in memory and saved to disk.

These tests need vLLM, so they live outside `tests/` (the default `pytest` run never
collects them) and run in their own venv: `make test-vllm` builds .venv-vllm with
scripts/setup_vllm_venv.sh when it is missing and runs

    LD_PRELOAD=$PWD/.venv-vllm/lib/libiomp5.so .venv-vllm/bin/python -m pytest -q tests_vllm

(the preload makes vLLM's CPU kernels about 4x faster on this machine). Each test module
skips itself when vllm cannot be imported. vLLM takes 1-3 minutes to start on a 2-core
CPU, so each module starts one engine and shares it.
"""
from __future__ import annotations

import pytest

from learner.models import init_model
from learner.presets import ModelConfig
from reasoning.countdown.tokenizer import build_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny(tokenizer):
    """The `tiny` preset with fixed-seed random weights (as in tests/rollout)."""
    return init_model(ModelConfig(preset="tiny", init_seed=0), tokenizer).eval()


@pytest.fixture(scope="session")
def tiny_dir(tiny, tokenizer, tmp_path_factory):
    """The same model saved in Hugging Face format (config.json + model.safetensors)."""
    directory = tmp_path_factory.mktemp("tiny")
    tiny.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
