"Presets as data, and the renamed config fields (audio_layers -> audio_depth, lm -> lm_name): old names still load."

import dataclasses, json
import pytest, torch
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.flamingo_config import PRESETS, RENAMED_FIELDS, FlamingoConfig, renamed_fields

OLD_STYLE = {
    "lm": None,
    "audio_layers": 1,
    "xattn_every": 2,
    "encoder": None,
    "xattn_heads": 4,
    "media_dim": 64,
    "lm_config": {**PRESETS["tiny"]["lm_config"]},
    "audio_heads": 4,
    "audio_ffn": 128,
    "encoder_dim": 128,
}


def test_presets_are_a_table_and_from_name_copies_it():
    assert set(PRESETS) == {"tiny", "af1", "small"} and all(isinstance(p, dict) for p in PRESETS.values())
    config = FlamingoConfig.from_name("tiny", xattn_every=2)
    assert config == FlamingoConfig(**{**PRESETS["tiny"], "xattn_every": 2})
    config.lm_config["hidden_size"] = 7
    assert PRESETS["tiny"]["lm_config"]["hidden_size"] == 256
    assert FlamingoConfig.from_name("small").lm_name == "smollm2"
    with pytest.raises(KeyError, match="unknown preset 'huge'.*af1"):
        FlamingoConfig.from_name("huge")
    model = build_model("tiny", encoder=None)
    assert model.config == FlamingoConfig.from_name("tiny", encoder=None)


def test_an_old_style_config_dict_loads_with_the_new_names():
    assert RENAMED_FIELDS == {"audio_layers": "audio_depth", "lm": "lm_name"}
    config = FlamingoConfig(**renamed_fields(OLD_STYLE))
    assert (config.audio_depth, config.lm_name, config.xattn_every) == (1, None, 2)
    assert not {"audio_layers", "lm"} & {f.name for f in dataclasses.fields(FlamingoConfig)}
    assert len(build_model(config).audio_layers.layers.layers) == 1  # the depth reached the module
    assert build_model("tiny", encoder=None, audio_layers=1).config.audio_depth == 1  # a YAML override, old name
    with pytest.raises(ValueError, match="'lm' and 'lm_name' are the same field"):
        renamed_fields({"lm": None, "lm_name": None})


def test_a_checkpoint_saved_with_the_old_names_loads(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from audioflamingo_lab.training import configure_trainable
    from audioflamingo_lab.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = configure_trainable(build_model("tiny", encoder=None, audio_depth=1), "pretrain").eval()
    path = save_checkpoint(model, tmp_path / "new.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config["lm"], config["audio_layers"] = config.pop("lm_name"), config.pop("audio_depth")  # as written before
    meta["config"] = json.dumps(config)
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata=meta)
    again = load_checkpoint(tmp_path / "old.safetensors").eval()
    assert again.config == model.config and again.config.audio_depth == 1
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
