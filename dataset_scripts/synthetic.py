"""A synthetic corpus in the IEMOCAP_full_release layout, spoken by espeak-ng: the project's embedded default.

`generate_corpus(out_dir)` writes ``Session1`` ... ``Session5`` exactly as the real release lays them out
(``dialog/EmoEvaluation``, ``dialog/transcriptions``, ``sentences/wav``), so `dataset_scripts.iemocap` reads it
unchanged. Each session has one female and one male speaker talking in improvised and scripted dialogs.

The labels are built so that a model needs both modalities:

* the words carry valence: positive, negative or neutral sentences drawn from templates;
* the prosody carries arousal: espeak-ng speaking rate, pitch and pitch range (not loudness, which feature
  extractors normalise away), each jittered per utterance, with four voices per gender.

    emotion   words      arousal          emotion   words      arousal
    neu       neutral    medium           exc       positive   high     (merged into happy by `4class`)
    hap       positive   high             fru       negative   medium
    ang       negative   high             sur/fea/dis/oth: see EMOTION_DESIGN
    sad       negative   low              xxx       random words and random arousal (no agreement)

Text alone cannot tell angry from sad (same sentence distribution); prosody alone cannot tell happy from angry
(same arousal). The annotated dimensions follow the same split: an utterance's valence rating is centred on what its
words say (`VALENCE_CENTRES`) and its arousal rating on how it is spoken (`AROUSAL_CENTRES`), each with the jitter of
a few evaluators' averaged ratings, so speech alone can predict arousal but not valence, and words alone the reverse
(only as far as the emotions tie them: sad is always low and negative). Dominance is centred per emotion.

The corpus also contains the real release's awkward parts so the builder's edge cases run on it:
exc / fru / xxx and rare codes, ``XX`` transcript lines without labels, speaker-tag lines, CRLF transcripts,
``[LAUGHTER]`` and ``[breathing]`` tags, a TAB inside one transcript, valence / arousal outside 1-5, macOS ``._``
dotfiles, evaluator subfolders and an ``.anvil`` file, an ``_1b`` dialog beside ``_1``, dialogs whose names are
prefixes of each other (``impro05a`` / ``impro05b``), and speakers whose gender differs from the motion-capture
actor letter in the dialog name.

Generation is deterministic for a seed: same labels, transcripts and (espeak-ng being deterministic) wav bytes.
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "AROUSAL_CENTRES",
    "EMOTION_DESIGN",
    "PROSODY",
    "SAMPLE_RATE",
    "CorpusSummary",
    "SyntheticUtterance",
    "VALENCE_CENTRES",
    "generate_corpus",
    "speak_utterance",
    "vocabulary",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_ESPEAK_SAMPLE_RATE = 22_050  # espeak-ng's native rate; 16000 / 22050 = 320 / 441

# --- the words: valence -------------------------------------------------------------------------------------------
# fmt: off
_WORDS = {
    "subj": ("i", "we", "you", "they"),
    "intens": ("really", "truly", "just", "totally", "honestly"),
    "so": ("so", "very", "really", "truly"),
    "det": ("this", "that", "the", "our", "my", "your"),
    "noun": (
        "house", "garden", "car", "job", "dinner", "trip", "movie", "song", "party", "weekend", "letter", "plan",
        "book", "city", "room", "hotel", "apartment", "project", "present", "phone", "window", "boat", "meeting",
        "class", "game", "jacket", "kitchen", "road", "morning", "evening",
    ),
    "place": (
        "beach", "office", "station", "market", "park", "airport", "school", "bank", "library", "restaurant",
        "hospital", "store", "lake", "theater",
    ),
    "pos_verb": ("love", "adore", "enjoy", "like"),
    "neg_verb": ("hate", "loathe", "despise", "dislike"),
    "pos_adj": (
        "wonderful", "lovely", "great", "amazing", "beautiful", "fantastic", "brilliant", "perfect", "delightful",
        "excellent", "charming", "cheerful", "marvelous", "splendid", "gorgeous",
    ),
    "neg_adj": (
        "terrible", "awful", "horrible", "dreadful", "miserable", "disgusting", "ugly", "broken", "rotten",
        "useless", "painful", "nasty", "stupid", "lousy", "hopeless",
    ),
    "pos_feel": ("happy", "glad", "thrilled", "excited", "proud", "grateful", "delighted"),
    "neg_feel": ("upset", "unhappy", "sorry", "tired", "disappointed", "ashamed", "sick"),
    "neu_verb": ("put", "left", "moved", "found", "brought", "carried", "checked", "cleaned"),
    "prep": ("near", "behind", "beside", "inside", "across from", "next to"),
    "color": ("blue", "green", "gray", "white", "brown", "black", "red", "yellow"),
    "day": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "number": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
}
# fmt: on
# Positive and negative templates mirror each other (same shapes and lengths), so only the words differ.
_TEMPLATES = {
    "positive": (
        "{subj} {intens} {pos_verb} {det} {pos_adj} {noun}.",
        "what a {pos_adj} {noun}!",
        "{det} {noun} is {so} {pos_adj}.",
        "we had a {pos_adj} time at the {place}.",
        "yes, the {noun} was {pos_adj}!",
        "i am {so} {pos_feel} about the {noun}.",
    ),
    "negative": (
        "{subj} {intens} {neg_verb} {det} {neg_adj} {noun}.",
        "what a {neg_adj} {noun}!",
        "{det} {noun} is {so} {neg_adj}.",
        "we had a {neg_adj} time at the {place}.",
        "no, the {noun} was {neg_adj}!",
        "i am {so} {neg_feel} about the {noun}.",
    ),
    "neutral": (
        "{subj} {neu_verb} the {noun} {prep} the {place}.",
        "the {noun} is {color}.",
        "we go to the {place} on {day}.",
        "the {noun} is {prep} the {place}.",
        "the {noun} starts at {number} on {day}.",
        "did you see the {noun} at the {place}?",
    ),
}
_SLOT = re.compile(r"\{(\w+)\}")
_NON_UTTERANCE_TEXT = ("yeah.", "M: Yeah.", "F :Here you go.")  # XX and speaker-tag lines, never in the dataset
_TAGS = ("[LAUGHTER]", "[breathing]")


# --- the voices: arousal ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prosody:
    rate: int  # espeak-ng -s, words per minute
    pitch: int  # espeak-ng -p, 0-99
    range_percent: int  # SSML <prosody range>
    word_gap: int  # espeak-ng -g, units of 10 ms


# Measured: a tiny wav2vec2 (mer.tiny) learns to tell these three levels apart within minutes on two CPU cores.
PROSODY = {
    "high": _Prosody(rate=220, pitch=80, range_percent=250, word_gap=0),
    "medium": _Prosody(rate=170, pitch=50, range_percent=100, word_gap=0),
    "low": _Prosody(rate=135, pitch=20, range_percent=20, word_gap=2),
}
_VOICES = {"F": tuple(f"en-us+f{i}" for i in range(1, 5)), "M": tuple(f"en-us+m{i}" for i in range(1, 5))}

# raw code -> (sentence valence, arousal level, centre of the annotated dominance)
EMOTION_DESIGN: dict[str, tuple[str, str, float]] = {
    "neu": ("neutral", "medium", 2.5),
    "hap": ("positive", "high", 3.0),
    "exc": ("positive", "high", 3.5),
    "ang": ("negative", "high", 4.0),
    "sad": ("negative", "low", 2.0),
    "fru": ("negative", "medium", 3.0),
    "sur": ("positive", "high", 2.5),
    "fea": ("negative", "high", 1.5),
    "dis": ("negative", "medium", 3.0),
    "oth": ("neutral", "medium", 3.0),
}
# Centres of the annotated valence (from the words) and arousal (from the prosody), on IEMOCAP's 1-5 scale.
VALENCE_CENTRES = {"positive": 4.25, "neutral": 3.0, "negative": 1.75}
AROUSAL_CENTRES = {"high": 4.25, "medium": 3.0, "low": 1.75}
# Codes cycle through this schedule over the whole corpus ("rare" takes turns over sur, fea, oth, dis), so every
# corpus (at least 40 utterances) has the other codes, and 20 utterances per dialog give every dialog the same mix.
_SCHEDULE = ("neu", "hap", "ang", "sad") * 4 + ("exc", "fru", "xxx", "rare")
_RARE = ("sur", "fea", "oth", "dis")
_CATEGORY_WORDS = {  # what the evaluator lines (C-E2: ...) say; the builder ignores them
    "neu": "Neutral state", "hap": "Happiness", "exc": "Excited", "ang": "Anger", "sad": "Sadness",
    "fru": "Frustration", "sur": "Surprise", "fea": "Fear", "dis": "Disgust", "oth": "Other",
}  # fmt: skip

# Dialogs per session: mocap actor letter + improvised / scripted; the odd names are on purpose (see module doc).
_DIALOGS = {
    1: ("Ses01F_impro01", "Ses01M_impro02", "Ses01F_script01_1", "Ses01M_script02_1"),
    2: ("Ses02F_impro01", "Ses02M_impro02", "Ses02F_script01_1", "Ses02M_script02_1"),
    3: ("Ses03F_impro01", "Ses03M_impro05a", "Ses03M_impro05b", "Ses03F_script01_1"),
    4: ("Ses04F_impro01", "Ses04M_impro02", "Ses04F_script01_1", "Ses04M_script02_1"),
    5: ("Ses05F_impro03", "Ses05M_impro02", "Ses05M_script01_1", "Ses05M_script01_1b"),
}


@dataclass(frozen=True)
class SyntheticUtterance:
    """One labelled utterance as written. `text` is the transcript exactly as in the file (tags, TAB included)."""

    id: str
    session: int
    dialog: str
    gender: str  # "F" / "M": the speaker's, from the last part of the id
    raw_label: str
    text: str
    valence: float
    arousal: float
    dominance: float
    start: float
    end: float
    voice: str
    sentence_valence: str  # "positive" / "negative" / "neutral": the words
    arousal_level: str  # "high" / "medium" / "low": the prosody

    @property
    def improvised(self) -> bool:
        return "_impro" in self.dialog


@dataclass(frozen=True)
class CorpusSummary:
    """What `generate_corpus` wrote: the corpus root (pass it as IEMOCAP `data_dir`) and every labelled utterance."""

    path: Path
    seed: int
    per_dialog: int
    utterances: tuple[SyntheticUtterance, ...]
    seconds: float  # wall time of the generation

    @property
    def num_utterances(self) -> int:
        return len(self.utterances)

    def raw_label_counts(self, session: int | None = None) -> Counter:
        """Raw code -> count, over the corpus or one session."""
        return Counter(u.raw_label for u in self.utterances if session is None or u.session == session)


def vocabulary() -> list[str]:
    """Every lowercase token (BERT basic tokenisation: words and punctuation) that a synthetic transcript can contain.

    A WordPiece vocabulary of the special tokens plus this list tokenises the whole corpus without ``[UNK]``.
    Sorted, without duplicates.
    """
    texts = [w for words in _WORDS.values() for w in words]
    texts += [_SLOT.sub(" ", t) for templates in _TEMPLATES.values() for t in templates]
    texts += [*_NON_UTTERANCE_TEXT, *_TAGS]
    return sorted({token for text in texts for token in _basic_tokens(text)})


def _basic_tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _sentence(rng: random.Random, valence: str) -> str:
    template = rng.choice(_TEMPLATES[valence])
    return _SLOT.sub(lambda m: rng.choice(_WORDS[m.group(1)]), template)


def _annotation(rng: random.Random, centre: float) -> float:
    # Averages of a few evaluators' integer ratings, as in the release: steps of 1/3 and 1/2 around the centre.
    return round(min(5.0, max(1.0, centre + rng.choice((-0.5, -1 / 3, 0.0, 1 / 3, 0.5)))), 4)


@dataclass(frozen=True)
class _Plan:
    """An utterance before synthesis: its start / end are still 0, they follow from the synthesised duration."""

    utterance: SyntheticUtterance
    spoken: str  # the transcript without tags
    prosody: _Prosody


def _plan_corpus(per_dialog: int, seed: int) -> list[list[_Plan]]:
    rng = random.Random(seed)
    dialogs, index = [], 0
    for session, names in _DIALOGS.items():
        for dialog in names:
            codes = []
            for _ in range(per_dialog):
                code = _SCHEDULE[index % len(_SCHEDULE)]
                codes.append(_RARE[(index // len(_SCHEDULE)) % len(_RARE)] if code == "rare" else code)
                index += 1
            rng.shuffle(codes)
            genders = ("F", "M") if rng.random() < 0.5 else ("M", "F")  # who speaks first; then they alternate
            numbers: Counter = Counter()
            plans = []
            for position, code in enumerate(codes):
                gender = genders[position % 2]
                utterance_id = f"{dialog}_{gender}{numbers[gender]:03d}"  # numbered per speaker, as in the release
                numbers[gender] += 1
                plans.append(_plan_utterance(rng, utterance_id, session, dialog, gender, code))
            dialogs.append(plans)
    _add_awkward_annotations(dialogs)
    return dialogs


def _plan_utterance(rng: random.Random, utterance_id: str, session: int, dialog: str, gender: str, code: str) -> _Plan:
    if code == "xxx":  # no majority among evaluators: any words, any arousal
        valence, level = rng.choice(tuple(_TEMPLATES)), rng.choice(tuple(PROSODY))
        # Three draws, as when all three centres were drawn here: every later draw, and so the audio, stays the same.
        dominance = [rng.choice((2.0, 2.5, 3.0, 3.5, 4.0)) for _ in range(3)][-1]
    else:
        valence, level, dominance = EMOTION_DESIGN[code]
    centre = (VALENCE_CENTRES[valence], AROUSAL_CENTRES[level], dominance)
    text = _sentence(rng, valence)
    base = PROSODY[level]
    prosody = _Prosody(
        rate=round(base.rate * rng.uniform(0.9, 1.1)),
        pitch=min(99, max(0, base.pitch + rng.randint(-8, 8))),
        range_percent=round(base.range_percent * rng.uniform(0.85, 1.15)),
        word_gap=base.word_gap,
    )
    valence_rating, arousal_rating, dominance_rating = (_annotation(rng, c) for c in centre)
    utterance = SyntheticUtterance(
        id=utterance_id,
        session=session,
        dialog=dialog,
        gender=gender,
        raw_label=code,
        text=text,
        valence=valence_rating,
        arousal=arousal_rating,
        dominance=dominance_rating,
        start=0.0,
        end=0.0,
        voice=rng.choice(_VOICES[gender]),
        sentence_valence=valence,
        arousal_level=level,
    )
    return _Plan(utterance=utterance, spoken=text, prosody=prosody)


def _add_awkward_annotations(dialogs: list[list[_Plan]]) -> None:
    """Fixed positions (independent of the seed) get the release's transcript tags, a TAB and out-of-range V/A/D."""
    first_dialog = {plans[0].utterance.session: plans for plans in dialogs[::-1]}

    def edit(session: int, position: int, **changes) -> None:
        plan = first_dialog[session][position]
        first_dialog[session][position] = replace(plan, utterance=replace(plan.utterance, **changes))

    text = {s: [p.utterance.text for p in first_dialog[s][:2]] for s in first_dialog}
    edit(1, 0, text=f"{text[1][0]} {_TAGS[0]}")  # tags are written in the transcript, not spoken
    edit(3, 1, text=f"{_TAGS[1]} {text[3][1]}")
    edit(5, 1, text=text[5][1].replace(" ", "\t", 1))
    edit(2, 0, valence=5.5)
    edit(4, 1, arousal=0.5)


def _synthesize(plan: _Plan, wav_path: Path) -> int:
    """Speak one utterance into a 16 kHz mono 16-bit wav; return its number of samples."""
    ssml = f'<speak><prosody range="{plan.prosody.range_percent}%">{escape(plan.spoken)}</prosody></speak>'
    command = [
        "espeak-ng", "-v", plan.utterance.voice, "-s", str(plan.prosody.rate), "-p", str(plan.prosody.pitch),
        "-g", str(plan.prosody.word_gap), "-m", "--stdout", ssml,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(
            f"espeak-ng failed for {plan.utterance.id} ({' '.join(command)}): {result.stderr.decode().strip()}"
        )
    samples, rate = sf.read(io.BytesIO(result.stdout), dtype="float64")
    if rate != _ESPEAK_SAMPLE_RATE:
        raise ValueError(f"espeak-ng wrote {rate} Hz for {plan.utterance.id}; expected {_ESPEAK_SAMPLE_RATE} Hz")
    resampled = resample_poly(samples, SAMPLE_RATE // 50, _ESPEAK_SAMPLE_RATE // 50)
    pcm = np.clip(np.round(resampled * 32767.0), -32768, 32767).astype(np.int16)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(wav_path, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return len(pcm)


def _session_dir(root: Path, session: int) -> Path:
    return root / f"Session{session}"


def _wav_path(root: Path, utterance: SyntheticUtterance) -> Path:
    return _session_dir(root, utterance.session) / "sentences" / "wav" / utterance.dialog / f"{utterance.id}.wav"


def _timed(rng: random.Random, plans: list[_Plan], lengths: list[int]) -> list[SyntheticUtterance]:
    """Lay a dialog's utterances out in time, one after the other with pauses between turns."""
    utterances, clock = [], round(rng.uniform(1.0, 3.0), 4)
    for plan, length in zip(plans, lengths, strict=True):
        end = round(clock + length / SAMPLE_RATE, 4)
        utterances.append(replace(plan.utterance, start=clock, end=end))
        clock = round(end + rng.uniform(0.4, 1.6), 4)
    return utterances


def _label_block(u: SyntheticUtterance) -> str:
    category = _CATEGORY_WORDS.get(u.raw_label, "Neutral state")
    ratings = [min(5, max(1, round(x))) for x in (u.valence, u.arousal, u.dominance)]
    return (
        f"[{u.start:.4f} - {u.end:.4f}]\t{u.id}\t{u.raw_label}\t"
        f"[{u.valence:.4f}, {u.arousal:.4f}, {u.dominance:.4f}]\n"
        f"C-E2:\t{category};\t()\nC-E3:\t{category};\t(calm)\n"
        f"A-E3:\tval {ratings[0]}; act {ratings[1]}; dom  {ratings[2]};\t()\n"
    )


def _write_dialog(root: Path, dialog: str, utterances: list[SyntheticUtterance]) -> None:
    dialog_dir = _session_dir(root, utterances[0].session) / "dialog"
    header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    labels = header + "\n".join(_label_block(u) for u in utterances) + "\n"
    (dialog_dir / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (dialog_dir / "EmoEvaluation" / f"{dialog}.txt").write_text(labels, encoding="utf-8", newline="\n")

    lines = [f"{u.id} [{u.start:08.4f}-{u.end:08.4f}]: {u.text}" for u in utterances]
    if dialog == "Ses05F_impro03":  # unlabelled XX turns, one id twice, once with empty text
        gap_start = utterances[0].end + 0.1
        xx = f"{dialog}_FXX3 [{gap_start:08.4f}-{gap_start + 0.2:08.4f}]:"
        lines[1:1] = [xx + " " + _NON_UTTERANCE_TEXT[0], xx]
    if dialog == "Ses01F_script01_1":  # speaker-tag lines without an id
        lines[1:1] = list(_NON_UTTERANCE_TEXT[1:])
    (dialog_dir / "transcriptions").mkdir(parents=True, exist_ok=True)
    transcript = "\r\n".join(lines) + "\r\n"  # the release's transcripts have CRLF line endings
    (dialog_dir / "transcriptions" / f"{dialog}.txt").write_text(transcript, encoding="utf-8", newline="")


def _write_strays(root: Path) -> None:
    """Files that are not labels, transcripts or utterance wavs; a reader that opens them fails loudly."""
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe\x00"
    session1 = _session_dir(root, 1)
    (session1 / "sentences" / "wav" / "Ses01F_impro01" / "._Ses01F_impro01_F000.wav").write_bytes(apple_double)
    (session1 / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(apple_double)
    (session1 / "dialog" / "transcriptions" / "._Ses01F_impro01.txt").write_bytes(apple_double)
    evaluation = session1 / "dialog" / "EmoEvaluation"
    (evaluation / "Ses01F_impro01_e2.anvil").write_text("<annotation/>\n", encoding="utf-8")
    for sub, line in (
        ("Categorical", "Ses01F_impro01_F000 :Neutral state; ()"),
        ("Attribute", "Ses01F_impro01_F000 :val 3; act 2; dom  2; ()"),
        ("Self-evaluation", "[6.2901 - 8.2357]\tnot a summary line"),
    ):
        (evaluation / sub).mkdir(exist_ok=True)
        (evaluation / sub / f"Ses01F_impro01_e2_{sub.lower()[:3]}.txt").write_text(line + "\n", encoding="utf-8")


def generate_corpus(
    out_dir: str | Path,
    per_dialog: int = 20,
    seed: int = 0,
    num_workers: int = 2,
    overwrite: bool = False,
) -> CorpusSummary:
    """Write a synthetic IEMOCAP_full_release tree to `out_dir` and describe it.

    Args:
        out_dir: corpus root to create (``Session1`` ... ``Session5`` go directly under it).
        per_dialog: labelled utterances per dialog, at least 2 (some awkward parts sit on the second utterance of a
            dialog); 20 dialogs, so 20 gives 400 utterances. Every corpus has neu, hap, ang, sad, exc, fru and
            xxx; sur, fea, oth and dis take turns, one per 20 utterances, so all four need per_dialog >= 4.
        seed: everything random (sentences, codes, voices, jitter, times) follows from it.
        num_workers: concurrent espeak-ng processes (threads wait on them, so no process pool is needed).
        overwrite: remove ``out_dir/Session1..5`` first; otherwise a non-empty `out_dir` is an error.

    Returns:
        A `CorpusSummary` whose `utterances` list each labelled utterance as written.

    Raises:
        FileNotFoundError: espeak-ng is not on PATH.
        FileExistsError: `out_dir` is not empty and `overwrite` is false.
        ValueError: `per_dialog` below 2 or `num_workers` below 1.
    """
    if per_dialog < 2:
        raise ValueError(f"per_dialog must be >= 2, got {per_dialog}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not on PATH; install the Debian package espeak-ng (make setup)")
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; choose a new directory or pass overwrite=True")
        for session in _DIALOGS:
            shutil.rmtree(_session_dir(root, session), ignore_errors=True)
    began = time.perf_counter()
    dialogs = _plan_corpus(per_dialog, seed)
    plans = [p for d in dialogs for p in d]
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        lengths = list(pool.map(lambda p: _synthesize(p, _wav_path(root, p.utterance)), plans))

    rng = random.Random(f"{seed}-times")  # a separate stream: changing the plan's draws keeps timings stable
    utterances, offset = [], 0
    for plans_of_dialog in dialogs:
        timed = _timed(rng, plans_of_dialog, lengths[offset : offset + len(plans_of_dialog)])
        offset += len(plans_of_dialog)
        _write_dialog(root, plans_of_dialog[0].utterance.dialog, timed)
        utterances += timed
    _write_strays(root)
    seconds = time.perf_counter() - began
    logger.info("wrote %d synthetic utterances to %s in %.1f s", len(utterances), root, seconds)
    return CorpusSummary(path=root, seed=seed, per_dialog=per_dialog, utterances=tuple(utterances), seconds=seconds)


def speak_utterance(utterance_id: str, wav_path: str | Path, per_dialog: int = 20, seed: int = 0) -> str:
    """Write the one utterance `utterance_id` of the corpus `generate_corpus(per_dialog=per_dialog, seed=seed)` would
    write, byte for byte, to `wav_path`; return its transcript.

    Raises:
        KeyError: that corpus has no such utterance.
    """
    plans = {plan.utterance.id: plan for dialog in _plan_corpus(per_dialog, seed) for plan in dialog}
    if utterance_id not in plans:
        raise KeyError(f"The corpus of per_dialog={per_dialog}, seed={seed} has no utterance {utterance_id}.")
    _synthesize(plans[utterance_id], Path(wav_path))
    return plans[utterance_id].utterance.text


def main(argv: list[str] | None = None) -> CorpusSummary:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="corpus root to write (the IEMOCAP data_dir)")
    parser.add_argument("--per-dialog", type=int, default=20, help="labelled utterances per dialog (20 dialogs)")
    parser.add_argument("--seed", type=int, default=0, help="seed for everything random")
    parser.add_argument("--workers", type=int, default=2, help="concurrent espeak-ng processes")
    parser.add_argument("--overwrite", action="store_true", help="replace Session1..5 in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = generate_corpus(args.out, args.per_dialog, args.seed, args.workers, args.overwrite)
    for session in _DIALOGS:
        counts = summary.raw_label_counts(session)
        logger.info("Session%d: %d utterances %s", session, sum(counts.values()), dict(sorted(counts.items())))
    return summary


if __name__ == "__main__":
    main()
