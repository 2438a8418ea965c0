"""Audio input for stage 3: any file soundfile reads (wav, flac, ogg, mp3) or a Kaldi pipe
command (``cmd ... |``, run in a shell only with ``allow_pipes``; stage 2's sox entries run without
one), mixed down to mono and resampled to 16 kHz."""

import io
import subprocess
from math import gcd
from pathlib import Path

import numpy as np
import soundfile

from espnet_lalora.datadir import sox_speed_argv

TARGET_RATE = 16000


class AudioError(ValueError):
    pass


def _command(spec: str, allow_pipes: bool):
    """What to run for a pipe entry: stage 2's sox argv (no shell), else the shell command."""
    argv = sox_speed_argv(spec)
    if argv:
        # An absolute path: sox cannot take it for an option, a "|command" or a URL.
        audio = Path(argv[1]).absolute()
        if not audio.is_file():
            raise AudioError(f"audio file {argv[1]} does not exist")
        return ["sox", str(audio)] + argv[2:], False
    if not allow_pipes:
        raise AudioError(f"'{spec}' is a shell command; it runs only with --allow_pipes true")
    return spec[:-1], True


def read_audio(spec: str, allow_pipes: bool = False):
    """Return ``(float32 mono waveform, original sample rate, original channels)``."""
    spec = spec.strip()
    try:
        if spec.endswith("|"):
            command, shell = _command(spec, allow_pipes)
            try:
                result = subprocess.run(command, shell=shell, capture_output=True)
            except FileNotFoundError as e:
                raise AudioError("sox not found; install it (apt-get install sox)") from e
            if result.returncode != 0:
                raise AudioError(f"command failed ({result.returncode}): "
                                 f"{result.stderr.decode(errors='replace').strip()[-300:]}")
            audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32",
                                         always_2d=True)
        else:
            if not Path(spec).is_file():
                raise AudioError(f"audio file {spec} does not exist")
            audio, rate = soundfile.read(spec, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        if spec.lower().endswith(".mp3") and "MP3" not in soundfile.available_formats():
            raise AudioError(f"cannot read {spec}: this libsndfile has no mp3 support; "
                             "pip install 'soundfile>=0.12.1'") from e
        raise AudioError(f"cannot read {spec} as audio ({e}); check the file or convert it to "
                         "WAV/FLAC") from e
    if rate < 4000:
        raise AudioError(f"{spec}: sample rate {rate} Hz is not a speech recording rate")
    if audio.shape[0] == 0:
        raise AudioError(f"{spec}: the audio is empty (0 samples)")
    return audio.mean(axis=1), rate, audio.shape[1]


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == TARGET_RATE:
        return audio
    from scipy.signal import resample_poly

    g = gcd(TARGET_RATE, rate)
    return resample_poly(audio, TARGET_RATE // g, rate // g).astype(np.float32)


def write_wav16(path, audio: np.ndarray):
    """16-bit PCM, clipped; written to a temporary name, then moved into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.wav")
    soundfile.write(tmp, np.clip(audio, -1.0, 1.0), TARGET_RATE, subtype="PCM_16")
    tmp.replace(path)
