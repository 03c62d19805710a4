"""The clickable examples: short sentences spoken by espeak-ng, made when the app starts (no recorded speech, no
IEMOCAP audio is shipped).

Each clip acts one emotion the way the project's synthetic corpus does (dataset_scripts/synthetic.py): the words
carry valence and the prosody (speaking rate, pitch, pitch range) carries arousal, so a model trained on that corpus
should recognise them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["EXAMPLES", "ExampleClip", "make_example_clips"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleClip:
    name: str  # file stem: the emotion the clip acts
    text: str
    voice: str  # espeak-ng voice
    rate: int  # words per minute (espeak-ng -s)
    pitch: int  # 0-99 (espeak-ng -p)
    range_percent: int  # SSML <prosody range>
    word_gap: int = 0  # units of 10 ms (espeak-ng -g)


# Sentences from the synthetic corpus's templates and words. Arousal as in that corpus: high = rate 220 / pitch 80 /
# range 250%, medium = 170 / 50 / 100%, low = 135 / 20 / 20% with a word gap.
EXAMPLES = (
    ExampleClip("happy", "what a wonderful party!", "en-us+f2", 220, 80, 250),
    ExampleClip("angry", "i really hate this awful job.", "en-us+m3", 220, 80, 250),
    ExampleClip("sad", "i am so sorry about the letter.", "en-us+f4", 135, 20, 20, word_gap=2),
    ExampleClip("neutral", "the meeting starts at ten on monday.", "en-us+m1", 170, 50, 100),
)


def make_example_clips(out_dir: str | Path, clips: tuple[ExampleClip, ...] = EXAMPLES) -> list[list[str]]:
    """Speaks `clips` into `out_dir/<name>.wav` (espeak-ng's 22.05 kHz, so the app's resampling is exercised).

    Returns:
        One `[wav_path, transcript]` row per clip, as `gr.Examples` takes them; no rows when espeak-ng is not
        installed or fails (the app then runs without examples, and says so in the log).
    """
    if shutil.which("espeak-ng") is None:
        logger.warning("espeak-ng is not installed: the app runs without example clips.")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in clips:
        path = out_dir / f"{clip.name}.wav"
        ssml = f'<speak><prosody range="{clip.range_percent}%">{escape(clip.text)}</prosody></speak>'
        command = [
            "espeak-ng", "-v", clip.voice, "-s", str(clip.rate), "-p", str(clip.pitch), "-g", str(clip.word_gap),
            "-m", "-w", str(path), ssml,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, check=False)
        if result.returncode != 0 or not path.is_file():
            logger.warning("espeak-ng failed for the %s example: %s", clip.name, result.stderr.decode().strip())
            continue
        rows.append([str(path), clip.text])
    return rows
