import os, pathlib
import numpy as np, pytest, soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def write_tone(path, seconds=1.0, sr=16000, freq=440.0, channels=1, amp=0.5):
    "Write a sine tone; returns the path."
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], 1)
    sf.write(str(path), x, sr)
    return pathlib.Path(path)


@pytest.fixture
def tone(tmp_path):
    return lambda name="tone.wav", **kw: write_tone(tmp_path / name, **kw)
