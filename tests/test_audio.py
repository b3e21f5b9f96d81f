import math, warnings
import numpy as np, pytest, soundfile as sf, torch
from audioflamingo_lab.audio import load_audio, num_windows, sliding_windows, windows_for_samples
from audioflamingo_lab.core import AudioError

SR = 16000


def formula(seconds, cap=16):
    "The spec rule, on exact decimals."
    n = 1 if seconds <= 7 else 1 + math.ceil(round((seconds - 7) / 1.75, 9))
    return n if cap is None else min(n, cap)


@pytest.mark.parametrize("seconds", [0.5, 7, 10, 30, 33.25, 60])
def test_window_counts_and_masks(seconds):
    sr = 1000  # small rate keeps 60 s cheap
    wave = np.random.default_rng(0).uniform(0.1, 1, round(seconds * sr)).astype(np.float32)
    n = formula(seconds)
    assert num_windows(seconds) == n
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w, m = sliding_windows(wave, sr, source="clip.wav")
    assert w.shape == (16, 7000) and m.dtype == torch.bool
    assert m.tolist() == [True] * n + [False] * (16 - n)
    assert (w[n:] == 0).all() and (w[:n].abs().sum(1) > 0).all()
    # windows are the padded clip at stride hop
    for i in range(n):
        seg = wave[i * 1750 : i * 1750 + 7000]
        assert torch.equal(w[i, : len(seg)], torch.from_numpy(seg)) and (w[i, len(seg) :] == 0).all()
    if seconds > 33.25:
        assert len(caught) == 1 and "clip.wav" in str(caught[0].message)
        assert f"{seconds - 33.25:.2f} s" in str(caught[0].message)
        full, fm = sliding_windows(wave, sr, max_windows=None)
        assert full.shape[0] == formula(seconds, None) == num_windows(seconds, max_windows=None) == 32 and fm.all()
        with pytest.raises(AudioError, match="clip.wav"):
            sliding_windows(wave, sr, on_long="error", source="clip.wav")
    else:
        assert not caught
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w2, m2 = sliding_windows(wave, sr, pad=False)
    assert w2.shape == (n, 7000) and m2.all()


def test_window_params_and_float_edges():
    # 33.25 s at 44.1 kHz is exactly 16 windows; at float precision (33.25-7)/1.75 must not give 17
    assert windows_for_samples(round(33.25 * 44100), 308700, 77175) == 16
    assert num_windows(33.25, max_windows=None) == 16
    assert num_windows(12, window_s=4, hop_s=2, max_windows=None) == 5
    w, m = sliding_windows(np.ones(1200), 100, window_s=4, hop_s=2, max_windows=8)
    assert w.shape == (8, 400) and m.sum() == 5
    with pytest.raises(ValueError, match="on_long"):
        sliding_windows(np.ones(10), 100, on_long="drop")
    with pytest.raises(AudioError, match="empty"):
        sliding_windows(np.zeros(0), 100)


def test_stereo_is_mean_of_channels(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 0.5, (SR, 2)).astype(np.float32)
    sf.write(tmp_path / "st.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "st.wav", SR, normalize=False)
    np.testing.assert_allclose(y, x.mean(1), atol=1e-7)
    z = load_audio(tmp_path / "st.wav", SR)
    mean = x.mean(1)
    np.testing.assert_allclose(z, mean / np.abs(mean).max(), atol=1e-6)


@pytest.mark.parametrize("sr_in", [8000, 44100, 96000])
def test_resample_keeps_length_and_pitch(tone, sr_in):
    path = tone(f"t{sr_in}.wav", seconds=1.5, sr=sr_in, freq=440.0)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and len(y) == round(1.5 * SR)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spec) * SR / len(y)
    assert abs(peak_hz - 440) < 2, peak_hz
    assert abs(np.abs(y).max() - 1) < 1e-6


def test_segment_read(tmp_path):
    x = (np.arange(SR * 3) % 1000 / 1000).astype(np.float32) + 0.1
    sf.write(tmp_path / "ramp.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "ramp.wav", SR, start=1.0, duration=0.5, normalize=False)
    np.testing.assert_array_equal(y, x[SR : SR + SR // 2])
    y = load_audio(tmp_path / "ramp.wav", SR, start=2.5, normalize=False)
    np.testing.assert_array_equal(y, x[int(2.5 * SR) :])
    with pytest.raises(AudioError, match=r"ramp\.wav.*beyond the end"):
        load_audio(tmp_path / "ramp.wav", SR, start=3.0)
    with pytest.raises(AudioError, match="negative"):
        load_audio(tmp_path / "ramp.wav", SR, start=-1)


def test_silence_is_zeros_not_nan(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(4000, np.float32), 8000)
    y = load_audio(tmp_path / "silent.wav", SR)
    assert len(y) == 8000 and not np.isnan(y).any() and (y == 0).all()


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"missing\.wav: file not found"):
        load_audio(tmp_path / "missing.wav", SR)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot be read"):
        load_audio(tmp_path / "corrupt.wav", SR)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty"):
        load_audio(tmp_path / "empty.wav", SR)
    bad = np.zeros(100, np.float32)
    bad[5] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN"):
        load_audio(tmp_path / "nan.wav", SR)
    inf = np.zeros(100, np.float32)
    inf[7] = np.inf
    sf.write(tmp_path / "inf.wav", inf, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"inf\.wav: contains NaN or infinite"):
        load_audio(tmp_path / "inf.wav", SR)
