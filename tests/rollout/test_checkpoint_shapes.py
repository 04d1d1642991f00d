"""The paged engine refuses a checkpoint whose weights do not fit its config.json, naming the tensor."""
from __future__ import annotations

import json

import pytest

from learner.checkpoint import save_checkpoint
from learner.models import init_model
from learner.presets import ModelConfig
from reasoning.countdown.tokenizer import build_tokenizer
from rollout import EngineConfig, make_engine
from rollout.errors import WeightUpdateError


def test_weights_that_do_not_fit_the_config_are_refused_naming_the_tensor(tmp_path):
    tokenizer = build_tokenizer()
    directory = save_checkpoint(tmp_path / "ckpt", init_model(ModelConfig(), tokenizer), tokenizer, {"step": 1}, None)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 2 * config["intermediate_size"]}))
    with pytest.raises(WeightUpdateError, match=r"model\.layers\.0\.mlp\.down_proj\.weight: shape \(128, 384\), expected \(128, 768\)"):
        make_engine("paged", str(directory), tokenizer, EngineConfig())
