"Chat with the keys/values of earlier turns kept: the same answers as a full re-prefill, a turn costs its new tokens."

import pytest, torch
from audioflamingo_lab.chat import ChatSession, QuestionTooLong
from audioflamingo_lab.core import seed_everything
from audioflamingo_lab.flamingo import build_model
from conftest import write_tone

QUESTIONS = ["what do you hear?", "is it loud?", "how long is it?", "is there speech?"]


@pytest.fixture(scope="module")
def model():
    seed_everything(0)
    m = build_model("tiny").eval()
    with torch.no_grad():  # open gates: the answers depend on the audio, so the media state must be right
        for _, layer in m.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.8)
            layer.xattn.alpha_ff.fill_(0.5)
    return m


def converse(model, clip, reuse_cache, questions=QUESTIONS):
    session = ChatSession(
        model,
        clip,
        max_new_tokens=8,
        reuse_cache=reuse_cache,
        min_new_tokens=4,
        output_logits=True,
        return_dict_in_generate=True,
    )
    turns = []
    for q in questions:
        session.ask(q)
        out = session.last_output
        turns.append((out.sequences[0].tolist(), torch.stack(out.logits, 1)[0]))
    return session, turns


def test_multi_turn_equals_full_reprefill(model, tmp_path):
    clip = write_tone(tmp_path / "a.wav", seconds=3.0, freq=523.0)
    cached, with_cache = converse(model, clip, reuse_cache=True)
    full, without = converse(model, clip, reuse_cache=False)
    assert cached.turns == full.turns
    for k, ((ids_c, logits_c), (ids_f, logits_f)) in enumerate(zip(with_cache, without)):
        assert ids_c == ids_f, f"turn {k + 1}: tokens differ"
        gap = (logits_c - logits_f).abs().max()
        assert torch.allclose(logits_c, logits_f, atol=1e-4), f"turn {k + 1}: max logit difference {gap}"
    # the cache holds the transcript: everything but the last generated token of the last turn
    assert cached.cached_ids == with_cache[-1][0][:-1]


def test_the_audio_matters_so_the_cached_media_state_is_checked(model, tmp_path):
    "With a different clip the answers' logits change: the test above would catch a wrong <audio> count in the cache."
    a = write_tone(tmp_path / "a.wav", seconds=3.0, freq=523.0)
    b = write_tone(tmp_path / "b.wav", seconds=6.0, freq=90.0, amp=0.9)
    _, turns_a = converse(model, a, True, QUESTIONS[:2])
    _, turns_b = converse(model, b, True, QUESTIONS[:2])
    assert not torch.allclose(turns_a[1][1], turns_b[1][1], atol=1e-3)


def test_a_turn_feeds_only_its_new_tokens(model, tmp_path):
    clip = write_tone(tmp_path / "a.wav", seconds=2.0)
    session = ChatSession(model, clip, max_new_tokens=4, min_new_tokens=4)
    first_prompt = session.prompt(QUESTIONS[0]).input_ids
    session.ask(QUESTIONS[0])
    second_prompt = session.prompt(QUESTIONS[1]).input_ids
    fed = []
    hook = model.lm.get_input_embeddings().register_forward_hook(lambda m, i, o: fed.append(i[0].shape[1]))
    try:
        session.ask(QUESTIONS[1])
    finally:
        hook.remove()
    assert second_prompt[: len(first_prompt)] == first_prompt
    assert 0 < fed[0] <= len(second_prompt) - len(first_prompt)  # the first turn's prompt is not read again
    assert fed[1:] == [1] * (len(fed) - 1)  # then one token per generated token


def test_transcript_past_max_tokens_drops_old_turns_and_stays_exact(tmp_path):
    seed_everything(1)
    small = build_model("tiny", max_tokens=64).eval()
    clip = write_tone(tmp_path / "a.wav", seconds=2.0)
    cached = ChatSession(small, clip, max_new_tokens=6)
    full = ChatSession(small, clip, max_new_tokens=6, reuse_cache=False)
    for q in QUESTIONS * 2:
        assert cached.ask(q) == full.ask(q)
    assert cached.prompt("again?").dropped > 0  # old turns were dropped: the cache was cropped and refilled


def test_too_long_question_is_refused_and_the_session_goes_on(model, tmp_path):
    session = ChatSession(model, write_tone(tmp_path / "a.wav", seconds=2.0), max_new_tokens=3)
    session.ask("what is it?")
    with pytest.raises(QuestionTooLong, match="too long"):
        session.ask("is it loud? " * 400)
    assert len(session.turns) == 1
    session.ask("is it loud?")
    assert [t["user"] for t in session.turns] == ["what is it?", "is it loud?"]


def test_beams_need_reuse_cache_off(model):
    with pytest.raises(ValueError, match="reuse_cache=False"):
        ChatSession(model, num_beams=2)
    ChatSession(model, num_beams=2, reuse_cache=False, max_new_tokens=2).ask("hello?")


def test_interactive_cli_chat_refuses_an_over_long_question_and_goes_on(model, tmp_path, monkeypatch, capsys):
    from audioflamingo_lab import cli
    from audioflamingo_lab.training import configure_trainable
    from audioflamingo_lab.checkpoint import save_checkpoint

    ckpt = save_checkpoint(configure_trainable(model, "pretrain"), tmp_path / "model.safetensors")
    typed = iter(["what is it?", "is it loud? " * 400, "is it loud?", ""])  # an empty line ends the chat
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    turns = cli.chat(str(ckpt), str(write_tone(tmp_path / "a.wav", seconds=2.0)), max_new_tokens=3, device="cpu")
    err = capsys.readouterr().err
    assert [t["user"] for t in turns] == ["what is it?", "is it loud?"]
    assert "question too long for this model" in err and "max_tokens=512" in err and "Traceback" not in err
