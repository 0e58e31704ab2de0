"""A spoken test set made at run time with espeak-ng: varied voices, names, numbers, dates.

Used by the WER test and ``python -m audio_ingest.bench``. The sentences are ours (written
for this project); espeak-ng (a Debian package) speaks them, so nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from audio_ingest.audio_io import SAMPLE_RATE, read_audio, resample

SENTENCES = (
    "My sister Priya is allergic to peanuts and shellfish.",
    "The dentist appointment is on Friday the twelfth of March at nine thirty.",
    "Please call my brother Daniel after six in the evening.",
    "We adopted a puppy called Biscuit last spring.",
    "Our flight to Lisbon leaves on the third of June.",
    "I paid four hundred and fifty dollars for the new bicycle.",
    "Remind me to water the tomatoes every Tuesday morning.",
    "My daughter Emma turns seven years old next month.",
    "The meeting with Doctor Wilson moved to Thursday afternoon.",
    "I usually run five kilometers before breakfast.",
    "Can you book a table for two at the Italian restaurant tonight?",
    "My grandmother was born in nineteen forty two in Dublin.",
    "The parcel should arrive between ten and noon tomorrow.",
    "I have been learning to play the guitar for three years.",
    "Send the invoice to Carlos at the office in Madrid.",
    "We are planning a camping trip to the lake in August.",
    "My phone number ends in seven eight three one.",
    "The kids love the dinosaur exhibit at the museum.",
    "I switched from coffee to green tea in January.",
    "Our anniversary is on the twenty first of September.",
)
#: American and British voices, male and female variants
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en-gb")
#: espeak-ng's rate (words/min) and gap between words (units of 10 ms). Its default, 175 wpm
#: run together, is harder for Whisper than people are: tiny.en's WER on this set goes from
#: about 12 % at these settings to 23 % at 160 wpm without gaps (docs/AUDIO.md).
SPEED = 150
WORD_GAP = 4


@dataclass(frozen=True, slots=True)
class Spoken:
    text: str
    voice: str
    audio: npt.NDArray[np.float32]  # 16 kHz mono


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(
    text: str, path: Path, *, voice: str = "en-us", speed: int = SPEED, gap: int = WORD_GAP
) -> Path:
    """Speak ``text`` into a WAV file (espeak-ng's own rate, 22,050 Hz)."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-g", str(gap), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def spoken_set(workdir: Path, n: int | None = None) -> list[Spoken]:
    """The first ``n`` sentences (all: None), voices taken in turn, as 16 kHz audio."""
    out = []
    for i, text in enumerate(SENTENCES[:n]):
        voice = VOICES[i % len(VOICES)]
        data, rate = read_audio(speak(text, workdir / f"s{i}.wav", voice=voice))
        out.append(Spoken(text, voice, resample(data[:, 0], rate, SAMPLE_RATE)))
    return out


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER after Whisper's English normaliser (numbers, spelling, punctuation)."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    refs = [norm(r) for r in references]
    hyps = [norm(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
