"Hugging Face habits: model folders and the Hub (offline), the processor, LoRA adapters in PEFT's format."

import copy, json, shutil
import numpy as np, pytest, soundfile as sf, torch
from audioflamingo_lab.core import Episode, Item, seed_everything
from audioflamingo_lab.flamingo import build_model, _build_lm
from audioflamingo_lab.hub import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    AudioFlamingoProcessor,
    FlamingoModel,
    load_lora_adapter,
    save_lora_adapter,
)
from audioflamingo_lab.template import render
from audioflamingo_lab.inference import audio_embeds, generate_text
from audioflamingo_lab.training import configure_trainable
from audioflamingo_lab.checkpoint import FORMAT
from conftest import write_tone


def tiny(seed=0, mode="pretrain", **lora):
    seed_everything(seed)
    model = configure_trainable(build_model("tiny").eval(), mode, lora=lora or None)
    with torch.no_grad():  # open gates and random LoRA: a wrong load would change the logits
        for _, layer in model.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.7)
            layer.xattn.alpha_ff.fill_(0.4)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    return FlamingoModel.from_model(model)


def inputs(model, clip):
    "The existing path: render as generate_text does (no task given: no prefix), window embeddings from audio_embeds."
    ids = render(
        Episode(Item(id="q", audio="q", prompt="what is it?")), model.tokenizer, with_answer=False, task_prefix=False
    ).input_ids
    emb, mask = audio_embeds(model, [clip])
    return dict(input_ids=torch.tensor([ids]), audio_embeds=emb, media_mask=mask)


@torch.no_grad()
def logits(model, batch):
    return model(**batch).logits


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_tone(tmp_path_factory.mktemp("audio") / "a.wav", seconds=3.0, freq=523.0))


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_save_and_load_a_folder(model, clip, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {WEIGHTS_NAME, CONFIG_NAME, "README.md"}
    assert json.loads((tmp_path / "m" / CONFIG_NAME).read_text())["format"] == FORMAT
    assert "audioflamingo-lab" in (tmp_path / "m" / "README.md").read_text()  # the model card's library
    again = FlamingoModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, FlamingoModel) and again.trainable_setup == model.trainable_setup
    batch = inputs(model, clip)
    assert torch.equal(logits(model.eval(), batch), logits(again.eval(), batch))


def test_loading_errors_are_clear(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        FlamingoModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a folder"):
        FlamingoModel.from_pretrained(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        FlamingoModel.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):  # offline and not cached: one clear line
        FlamingoModel.from_pretrained("no-such-org/no-such-model", cache_dir=tmp_path / "hf-cache")


def test_from_pretrained_reads_a_hub_repo_through_snapshot_download(model, clip, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_file(repo_id, filename, **kw):
        return str(tmp_path / "snapshot" / filename)

    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", fake_file)

    def fake_snapshot(repo_id, **kw):
        calls.append((repo_id, kw["revision"]))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr("audioflamingo_lab.hub.snapshot_download", fake_snapshot)
    again = FlamingoModel.from_pretrained("org/tiny-afl", revision="v1")
    assert calls == [("org/tiny-afl", "v1")]
    batch = inputs(model, clip)
    assert torch.equal(logits(model, batch), logits(again.eval(), batch))


def test_push_to_hub_uploads_the_saved_folder(model, clip, tmp_path, monkeypatch):
    calls, uploaded = [], tmp_path / "uploaded"

    class RecordingApi:  # stands in for HfApi: no network
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, repo_type, folder_path, **kw):
            calls.append(("upload_folder", repo_id, repo_type, kw["commit_message"]))
            shutil.copytree(folder_path, uploaded)
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr("huggingface_hub.hub_mixin.HfApi", RecordingApi)
    url = model.push_to_hub("me/tiny-afl", private=True, token="t0k", commit_message="first")
    assert url.endswith("/commit/0")
    assert calls == [
        ("init", "t0k"),
        ("create_repo", "me/tiny-afl", True, True),
        ("upload_folder", "me/tiny-afl", "model", "first"),
    ]
    assert {p.name for p in uploaded.iterdir()} == {WEIGHTS_NAME, CONFIG_NAME, "README.md"}
    batch = inputs(model, clip)
    assert torch.equal(logits(model, batch), logits(FlamingoModel.from_pretrained(uploaded).eval(), batch))


def test_processor_matches_the_existing_path(model, clip):
    processor = AudioFlamingoProcessor.from_model(model)
    batch = processor(text="what is it?", audio=clip, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask", "audio", "media_mask"}
    reference = logits(model, inputs(model, clip))
    assert torch.allclose(logits(model, batch), reference, atol=1e-5)
    wave = sf.read(clip, dtype="float32")[0]  # a waveform is taken as is (a file is loaded by audio.load_audio)
    from_wave = processor(text="what is it?", audio=wave, sampling_rate=16000)
    emb, mask = audio_embeds(model, [wave])
    reference = logits(model, dict(input_ids=from_wave["input_ids"], audio_embeds=emb, media_mask=mask))
    assert torch.allclose(logits(model, from_wave), reference, atol=1e-5)


def test_processor_batch_generates_what_generate_text_gives(model, clip):
    processor = AudioFlamingoProcessor.from_model(model)
    prompts = ["what is it?", "describe the music at length.", "is it loud?"]
    batch = processor(text=prompts, audio=[clip, None, clip], task="aqa", padding_side="left")
    assert batch["media_mask"].shape[:2] == (3, 1) and not batch["media_mask"][1].any()
    out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4)
    got = processor.batch_decode(out[:, batch["input_ids"].shape[1] :])
    want = [
        generate_text(model, p, a, task="aqa", max_new_tokens=4, min_new_tokens=4)
        for p, a in zip(prompts, [clip, None, clip])
    ]
    assert got == want


def test_processor_errors(model, clip):
    processor = AudioFlamingoProcessor.from_model(model)
    with pytest.raises(ValueError, match="2 texts but 1 audios"):
        processor(text=["a", "b"], audio=[clip])
    with pytest.raises(ValueError, match="44100 Hz"):
        processor(text="a", audio=np.zeros(44100), sampling_rate=44100)
    with pytest.raises(ValueError, match="1-D"):
        processor(text="a", audio=np.zeros((2, 16000)))
    with pytest.raises(ValueError, match="only 'pt'"):
        processor(text="a", return_tensors="np")
    with pytest.raises(ValueError, match="no window encoder"):
        AudioFlamingoProcessor(model.tokenizer).windows(clip)


def test_lora_adapter_round_trip_and_peft_loads_it(clip, tmp_path):
    seed_everything(3)
    base = build_model("tiny").eval()
    with torch.no_grad():
        for _, layer in base.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.5)
    base_state = copy.deepcopy(base.state_dict())  # everything but the adapter
    configure_trainable(base, "lora", lora={"r": 4, "alpha": 8})
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    save_lora_adapter(base, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["target_modules"] and not any("decoder_layer" in t for t in config["target_modules"])
    other = build_model("tiny").eval()
    other.load_state_dict(base_state)
    load_lora_adapter(other, tmp_path / "adapter")
    assert other.trainable_setup["mode"] == "lora"
    batch = inputs(base, clip)
    assert torch.equal(logits(base, batch), logits(other, batch))
    # peft's own API reads the folder onto the plain LM (no audio side): every LoRA tensor lands where it belongs
    from peft import PeftModel
    from peft.utils import load_peft_weights

    peft_lm = PeftModel.from_pretrained(_build_lm(base.config)[0], str(tmp_path / "adapter"))
    saved = load_peft_weights(str(tmp_path / "adapter"))
    loaded = {k.replace(".default", ""): v for k, v in peft_lm.state_dict().items() if "lora_" in k}
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_lora_model_folder_has_the_adapter_and_round_trips(clip, tmp_path):
    model = tiny(seed=4, mode="lora", r=4, alpha=8)
    model.save_pretrained(tmp_path / "m")
    assert {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME} <= {p.name for p in (tmp_path / "m").iterdir()}
    batch = inputs(model, clip)
    assert torch.equal(logits(model, batch), logits(FlamingoModel.from_pretrained(tmp_path / "m").eval(), batch))


def test_lora_adapter_errors(tmp_path):
    model = tiny(seed=5, mode="lora", r=4, alpha=8)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        save_lora_adapter(tiny(seed=5), tmp_path / "x")
    save_lora_adapter(model, tmp_path / "a")
    with pytest.raises(ValueError, match="r=4, alpha=8 .* r=8, alpha=16"):
        load_lora_adapter(tiny(seed=5, mode="lora"), tmp_path / "a")  # the default LoRA is r=8
    (tmp_path / "a" / ADAPTER_WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=ADAPTER_WEIGHTS_NAME):
        load_lora_adapter(build_model("tiny"), tmp_path / "a")
