"""TESS, the Toronto emotional speech set, as a `datasets` builder for the release as downloaded.

The release (Dupuis & Pichora-Fuller, University of Toronto, 2010; Borealis, formerly Scholars Portal Dataverse,
doi:10.5683/SP2/E8H2MF; also TSpace handle 1807/24487) holds 2,800 wav files, 24,414 Hz mono: two actresses, OAF
(the older, aged 64) and YAF (the younger, aged 26), each saying the carrier phrase "Say the word _" with the 200
target words of the NU Auditory Test No. 6 in seven emotions. A file is named ``<speaker>_<word>_<emotion>.wav``,
e.g. ``OAF_back_angry.wav`` or ``YAF_youth_ps.wav``, with the emotion codes angry, disgust, fear, happy, neutral, ps
(pleasant surprise) and sad. The Dataverse download is flat; the TSpace and Kaggle copies put the files in one
folder per speaker and emotion, named inconsistently (``OAF_Fear``, ``OAF_Pleasant_surprise``, ``OAF_Sad``,
``YAF_pleasant_surprised`` ...), the Kaggle copy under ``TESS Toronto emotional speech set data/``, and some copies
of it hold that folder twice, once nested in itself.

Files are found by name at any depth in any format ffmpeg reads; folder names are not needed. What the names get
wrong is read and reported in the check, not guessed silently: an emotion or speaker code in another case
(``OAF_back_Fear``), an emotion spelt out as a folder spells it (``pleasant_surprised``), the speaker code ``OA``
of the Kaggle copy's ``OA_bite_neutral.wav`` (in ``OAF_neutral``; other copies have ``OAF_bite_neutral.wav``),
a byte-identical second copy (the doubly nested folder), a file whose folder names another speaker or emotion, and
audio files named like no TESS file. Two different files with the same name are a `Problem`.

The word list is not shipped with the release, so the check compares counts per speaker and emotion (200 each)
and names, for a cell that is short, the words that speaker says in most of her other emotions but not in it.

The standard protocol here is speaker-independent, leave one speaker out: split ``fold1`` is OAF's 1,400
utterances (the test set when training on YAF), ``fold2`` is YAF's (`SPEAKER_FOLDS`). EmoBox publishes a single
random 25 % stratified split for TESS instead (it has fewer than four speakers), which is not speaker-independent.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from ..labels import CORPUS_LABELS
from ..release import (
    Problem,
    Release,
    ReleaseCheck,
    Scan,
    audio_problem,
    find_files,
    require_directory,
    utterance_features,
)

__all__ = [
    "RELEASE",
    "CARRIER",
    "DOCUMENTED_PER_CELL",
    "EMOTIONS",
    "SPEAKERS",
    "SPEAKER_FOLDS",
    "Tess",
    "load_tess",
    "scan_tess",
]

# TESS's emotion codes as its file names write them, in the label order of `dataset_scripts.labels`.
EMOTIONS = tuple(CORPUS_LABELS["tess"])
# How a name may spell an emotion other than by its code (lower-cased): the folder spellings of the TSpace and Kaggle
# copies. Read, normalised to the code and reported.
EMOTION_SPELLINGS = {
    "pleasant_surprise": "ps", "pleasant_surprised": "ps", "pleasant-surprise": "ps", "pleasant-surprised": "ps",
    "surprise": "ps", "surprised": "ps", "anger": "angry", "disgusted": "disgust", "fearful": "fear",
    "happiness": "happy", "sadness": "sad",
}  # fmt: skip
# speaker -> (gender, age at recording), from the release's description
SPEAKERS = {"OAF": ("F", 64), "YAF": ("F", 26)}
# How a name may write a speaker code other than OAF / YAF (upper-cased): the Kaggle copy's OA_bite_neutral.wav.
SPEAKER_SPELLINGS = {"OA": "OAF"}
# Leave one speaker out: fold -> the speaker it tests.
SPEAKER_FOLDS = {1: "OAF", 2: "YAF"}
CARRIER = "Say the word"
DOCUMENTED_WORDS = 200
DOCUMENTED_PER_CELL = DOCUMENTED_WORDS  # each speaker says each word once in each emotion
DOCUMENTED_FILES = len(SPEAKERS) * len(EMOTIONS) * DOCUMENTED_PER_CELL  # 2,800
_EMOTION_ALTERNATIVES = "|".join(sorted({*EMOTIONS, *EMOTION_SPELLINGS}, key=len, reverse=True))
_SPEAKER_ALTERNATIVES = "|".join(sorted({*SPEAKERS, *SPEAKER_SPELLINGS}, key=len, reverse=True))
_NAME = re.compile(
    rf"(?P<speaker>{_SPEAKER_ALTERNATIVES})_(?P<word>[a-z]+)_(?P<emotion>{_EMOTION_ALTERNATIVES})", re.IGNORECASE
)
# The per speaker and emotion folders of the TSpace and Kaggle copies (OAF_Fear, YAF_pleasant_surprised, ...).
_FOLDER = re.compile(rf"(?P<speaker>OAF|YAF)[ _-](?P<emotion>{_EMOTION_ALTERNATIVES})", re.IGNORECASE)
EXPECTED = (
    "the TESS release: 2,800 files named <speaker>_<word>_<emotion>.wav such as OAF_back_angry.wav or "
    "YAF_youth_ps.wav, flat or in folders such as OAF_angry, YAF_pleasant_surprised"
)
_LISTED = 10  # names listed in one note before "... and N more"


def _emotion_code(written: str) -> str:
    written = written.lower()
    return EMOTION_SPELLINGS.get(written, written)


def _speaker_code(written: str) -> str:
    written = written.upper()
    return SPEAKER_SPELLINGS.get(written, written)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _same_bytes(first: Path, second: Path) -> bool:
    if first.stat().st_size != second.stat().st_size:
        return False
    return first.read_bytes() == second.read_bytes()


def _match_tess(
    root: Path, files: list[Path], problems: list[Problem], notes: list[str]
) -> tuple[dict[str, tuple[Path, str, str, str]], list[Path]]:
    """TESS files by their normalised id ``<speaker>_<word>_<emotion>``: id -> (path, speaker, word, emotion), and
    the files named like no TESS file. Unlike `release.match_files` the match ignores case and normalises the
    spellings above (each reported in `notes`), and a byte-identical second copy is a note, not a problem; a second
    file with the same id and other content is a problem naming both. The shallowest path is kept (of equally deep
    ones, the first in sorted order): the outer copy of a doubly nested folder."""
    matched: dict[str, tuple[Path, str, str, str]] = {}
    unmatched: list[Path] = []
    respelt: list[str] = []
    copies: list[str] = []
    misfiled: list[str] = []
    for path in sorted(files, key=lambda path: (len(path.parts), path)):
        match = _NAME.fullmatch(path.stem)
        if match is None:
            unmatched.append(path)
            continue
        speaker, emotion = _speaker_code(match["speaker"]), _emotion_code(match["emotion"])
        word = match["word"].lower()
        uid = f"{speaker}_{word}_{emotion}"
        if uid in matched:
            first = matched[uid][0]
            if _same_bytes(first, path):
                copies.append(str(path.relative_to(root)))
            else:
                problems.append(Problem(path, None, f"{uid} is here twice with different content: also {first}"))
            continue
        if path.stem != uid:
            respelt.append(f"{path.stem} (read as {uid})")
        folder = _FOLDER.fullmatch(path.parent.name)
        if folder is not None and (folder["speaker"].upper(), _emotion_code(folder["emotion"])) != (speaker, emotion):
            misfiled.append(f"{path.relative_to(root)}")
        matched[uid] = (path, speaker, word, emotion)
    if respelt:
        notes.append(f"{len(respelt)} file name(s) spelt unlike the others, normalised: {_listing(sorted(respelt))}")
    if copies:
        notes.append(
            f"{len(copies)} byte-identical second copy(ies) of a file (e.g. a doubly nested folder), not read: "
            f"{_listing(copies)}"
        )
    if misfiled:
        notes.append(
            f"{len(misfiled)} file(s) in a folder of another speaker or emotion, labelled by the file name: "
            f"{_listing(misfiled)}"
        )
    return matched, unmatched


def _check_cells(matched: dict[str, tuple[Path, str, str, str]], check: ReleaseCheck) -> None:
    """Compares each speaker x emotion with the documented 200 words. A short cell's missing names are the words its
    speaker says in most of the emotions she has files in but not in it; a word said in fewer is reported as odd (a
    misspelt or foreign name), not as missing from the others."""
    words: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _, speaker, word, emotion in matched.values():
        words[speaker, emotion].add(word)
    for speaker in SPEAKERS:
        cells = {emotion: words[speaker, emotion] for emotion in EMOTIONS}
        spoken_in = Counter(word for cell in cells.values() for word in cell)
        majority = sum(1 for cell in cells.values() if cell) // 2 + 1  # of the emotions she has files in
        usual = {word for word, count in spoken_in.items() if count >= majority}
        for emotion, cell in cells.items():
            lacking = sorted(usual - cell)
            check.missing += [f"{speaker}_{word}_{emotion}" for word in lacking]
            if len(cell) != DOCUMENTED_PER_CELL:
                note = f"{speaker} {emotion}: {len(cell)} files, {DOCUMENTED_PER_CELL} documented"
                if lacking:
                    note += f"; lacks {_listing(lacking)} (said in {speaker}'s other emotions)"
                check.notes.append(note)
        odd = sorted(f"{speaker}_{word}_{emotion}" for emotion, cell in cells.items() for word in cell - usual)
        if odd:
            check.notes.append(f"{len(odd)} {speaker} word(s) said in fewer than {majority} emotions: {_listing(odd)}")
        if len(usual) != DOCUMENTED_WORDS and spoken_in:
            check.notes.append(f"{speaker} says {len(usual)} words in most emotions, {DOCUMENTED_WORDS} documented")
    check.missing.sort()


def scan_tess(data_dir: str | Path) -> Scan:
    """Reads every TESS file under `data_dir`: the examples of each fold, the problems (unreadable audio, two
    different files with one name) and the check against the 2,800 documented files (counts per speaker and
    emotion, the words a short cell lacks, the names spelt unlike the others, second copies, other audio files).

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: no TESS file under it (naming what was found instead).
    """
    root = require_directory(Path(data_dir), "TESS", EXPECTED)
    problems: list[Problem] = []
    notes: list[str] = []
    matched, unmatched = _match_tess(root, find_files(root), problems, notes)
    if not matched:
        found = [str(path.relative_to(root)) for path in unmatched[:5]]
        raise ValueError(f"{root} is not a TESS release: expected {EXPECTED}; found no such file (found: {found})")
    check = ReleaseCheck("TESS", DOCUMENTED_FILES, len(matched), notes=notes)
    _check_cells(matched, check)
    if unmatched:
        names = [str(path.relative_to(root)) for path in unmatched]
        check.notes.append(f"{len(unmatched)} audio file(s) not named like TESS files, not read: {_listing(names)}")
    fold_of = {speaker: fold for fold, speaker in SPEAKER_FOLDS.items()}
    splits: dict[str, list[dict]] = {f"fold{fold}": [] for fold in SPEAKER_FOLDS}
    for uid, (path, speaker, word, emotion) in sorted(matched.items()):
        message = audio_problem(path)
        if message is not None:
            problems.append(Problem(path, None, message))
            continue
        gender, age = SPEAKERS[speaker]
        splits[f"fold{fold_of[speaker]}"].append(
            {
                "id": uid,
                "audio": str(path),
                "text": f"{CARRIER} {word}",
                "label": emotion,
                "speaker": speaker,
                "gender": gender,
                "age": age,
                "word": word,
                "fold": fold_of[speaker],
            }
        )
    return Scan(splits, problems, check)


RELEASE = Release(
    key="tess",
    name="TESS",
    scan=scan_tess,
    features=utterance_features(EMOTIONS, age="int32", word="string", fold="int32"),
    description="TESS: 2 actresses (aged 64 and 26), 200 words in 'Say the word _', 7 emotions (Dupuis & "
    "Pichora-Fuller, 2010).",
    homepage="https://doi.org/10.5683/SP2/E8H2MF",
    license="CC BY-NC-ND 4.0",
    citation="Pichora-Fuller, M. K. & Dupuis, K. Toronto emotional speech set (TESS). Borealis (Scholars Portal "
    "Dataverse), 2020. https://doi.org/10.5683/SP2/E8H2MF",
    expected=EXPECTED,
    file_names=_NAME,
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
Tess = RELEASE.builder_class
load_tess = RELEASE.load
