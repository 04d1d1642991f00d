"""Model presets: sizes, Hugging Face save/load offline, deterministic initialisation."""
from __future__ import annotations

import json

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from learner.models import CheckpointError, count_parameters, init_model, llama_config, load_model, save_model
from learner.presets import PRESETS, ModelConfig
from reasoning.countdown.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize(
    "preset, low, high", [("tiny", 0.7e6, 1.5e6), ("small", 10e6, 20e6), ("apr-228m", 220e6, 236e6)]
)
def test_preset_sizes(tokenizer, preset, low, high):
    with torch.device("meta"):  # no memory, no time: shapes only
        model = LlamaForCausalLM(llama_config(preset, tokenizer))
    assert low <= count_parameters(model) <= high


def test_apr_shape_is_the_papers():
    shape = PRESETS["apr-228m"]
    assert (shape.num_layers, shape.hidden_size, shape.num_heads, shape.intermediate_size) == (18, 1024, 16, 2752)
    assert shape.max_position_embeddings == 4096


def test_vocabulary_and_special_ids_come_from_the_tokenizer(tokenizer):
    config = llama_config("tiny", tokenizer)
    assert config.vocab_size == len(tokenizer)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 0)


def test_same_seed_same_weights(tokenizer):
    a = init_model(ModelConfig(init_seed=3), tokenizer).state_dict()
    b = init_model(ModelConfig(init_seed=3), tokenizer).state_dict()
    c = init_model(ModelConfig(init_seed=4), tokenizer).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_save_and_load_offline_with_auto_classes(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = init_model(ModelConfig(), tokenizer).eval()
    save_model(model, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = torch.tensor([loaded_tokenizer.encode("24|3 5 7 2\n<answer>")])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert torch.equal(load_model(tmp_path)(ids).logits, model(ids).logits)


def test_loading_a_non_checkpoint_names_the_directory(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path}: not a model checkpoint"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_model(tmp_path)


def test_a_truncated_checkpoint_is_refused_naming_the_file(tokenizer, tmp_path):
    from learner.checkpoint import save_checkpoint

    directory = save_checkpoint(tmp_path / "ckpt", init_model(ModelConfig(), tokenizer), tokenizer, {"step": 1}, None)
    assert (directory / "manifest.json").is_file() and not list(tmp_path.glob(".*"))  # no temporary left
    load_model(directory)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: \d+ bytes, the manifest says \d+"):
        load_model(directory)


def test_weights_that_do_not_fit_the_config_are_refused_naming_the_tensor(tokenizer, tmp_path):
    from learner.checkpoint import save_checkpoint

    directory = save_checkpoint(tmp_path / "ckpt", init_model(ModelConfig(), tokenizer), tokenizer, {"step": 1}, None)
    (directory / "manifest.json").unlink()  # a checkpoint from elsewhere: no manifest to catch the edit
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 2 * config["intermediate_size"]}))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.down_proj\.weight "
                       r"has shape \[128, 384\], but config\.json gives \[128, 768\]"):  # fmt: skip
        load_model(directory)


def _treadle_model(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", "model", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_model_init_command(tmp_path):
    result = _treadle_model("init", "--config", "configs/countdown-3.yaml", "--out", str(tmp_path), "model.init_seed=1")
    assert result.returncode == 0, result.stderr
    assert "wrote tiny (" in result.stdout
    assert load_model(tmp_path).config.num_hidden_layers == PRESETS["tiny"].num_layers


def test_model_commands_offer_exactly_the_dtypes_treadle_loads():
    from actors.commands.model import SAVED_DTYPES
    from learner.models import DTYPES

    assert SAVED_DTYPES == tuple(DTYPES)


def test_model_convert_to_bf16_halves_the_weights_and_keeps_tokenizer_and_keys(tmp_path):
    from learner.checkpoint import load_trained_keys

    source = REPO / "checkpoints" / "countdown-3-sft-parallel"  # fp32, an older plain key file
    result = _treadle_model("convert", "--model", str(source), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "bf16"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    size = (out / "model.safetensors").stat().st_size
    assert size < 0.51 * (source / "model.safetensors").stat().st_size
    original, converted = load_model(source).state_dict(), load_model(out).state_dict()  # back in fp32
    assert original.keys() == converted.keys()
    for name, tensor in original.items():
        assert torch.equal(converted[name], tensor.to(torch.bfloat16).float()), name
    assert load_trained_keys(out) == load_trained_keys(source) and len(load_trained_keys(out)) > 0
    assert AutoTokenizer.from_pretrained(str(out)).get_vocab() == AutoTokenizer.from_pretrained(str(source)).get_vocab()


def test_model_convert_refuses_an_out_that_would_replace_what_it_should_not(tmp_path):
    import shutil

    run = tmp_path / "runs" / "x"
    source = run / "final"
    shutil.copytree(REPO / "checkpoints" / "countdown-3-sft-parallel", source)
    (run / "log.txt").write_text("a run's own file")
    elsewhere = tmp_path / "notes"
    elsewhere.mkdir()
    (elsewhere / "todo.txt").write_text("not a model")
    for out in (source, run, source / "bf16", elsewhere):
        result = _treadle_model("convert", "--model", str(source), "--out", str(out), "--dtype", "bfloat16")
        assert result.returncode == 2 and f"--out {out}:" in result.stderr, (out, result.stderr)
    assert (run / "log.txt").is_file() and (elsewhere / "todo.txt").is_file() and not (source / "bf16").exists()
    load_model(source)  # its manifest still verifies: nothing was written into it
    again = tmp_path / "bf16"
    for _ in range(2):  # a directory treadle wrote may be replaced
        result = _treadle_model("convert", "--model", str(source), "--out", str(again), "--dtype", "bfloat16")
        assert result.returncode == 0, result.stderr


def test_model_convert_of_a_missing_model_names_it(tmp_path):
    missing = tmp_path / "none"
    result = _treadle_model("convert", "--model", str(missing), "--out", str(tmp_path / "o"), "--dtype", "float16")
    assert result.returncode == 2 and f"{missing}: not a model checkpoint" in result.stderr
    assert not (tmp_path / "o").exists()
