"""RAVDESS, the speech part, as a `datasets` builder for the release as downloaded.

The release (Livingstone & Russo, 2018; Zenodo record 1188976, ``Audio_Speech_Actors_01-24.zip``) unpacks to
``Actor_01`` ... ``Actor_24``, each holding ``03-01-EE-II-SS-RR-AA.wav``: modality (03 audio only), vocal channel
(01 speech), emotion EE (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity II (01 normal, 02 strong; neutral has normal only), statement SS (01 "Kids are talking by the door", 02
"Dogs are sitting by the door"), repetition RR (01, 02) and actor AA (odd male, even female). 24 x 60 = 1,440 files.

Files are found by name at any depth (the actor folders, or all in one folder) in any format ffmpeg reads (the
release's wav, or a re-encoding such as Opus). The other parts of RAVDESS (song, vocal channel 02; the video files,
modalities 01 and 02) are not read; if they are present, the check says how many were left out.

The standard protocol is speaker-independent: EmoBox's six folds of four actors each (`FOLDS`), the
``fold1`` ... ``fold6`` splits.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

from ..release import (
    Problem,
    Release,
    ReleaseCheck,
    Scan,
    audio_problem,
    find_files,
    match_files,
    require_directory,
    utterance_features,
)

__all__ = ["RELEASE", "FOLDS", "EMOTIONS", "STATEMENTS", "Ravdess", "load_ravdess", "scan_ravdess"]

EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust",
    "08": "surprised",
}  # fmt: skip
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = ("01", "02")
ACTORS = [f"{number:02d}" for number in range(1, 25)]
# EmoBox's RAVDESS folds (Ma et al., 2024, its data/ravdess/fold_<n> test files): fold -> the actors it tests.
FOLDS: dict[int, tuple[str, ...]] = {
    1: ("01", "11", "20", "21"),
    2: ("04", "10", "12", "14"),
    3: ("08", "09", "19", "23"),
    4: ("03", "05", "07", "24"),
    5: ("02", "15", "16", "18"),
    6: ("06", "13", "17", "22"),
}
DOCUMENTED_FILES = 1440
_NAME = re.compile(r"(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-"
                   r"(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})")  # fmt: skip
EXPECTED = "the RAVDESS speech release: Actor_01 ... Actor_24 holding 03-01-EE-II-SS-RR-AA.wav files"


def _documented_names() -> set[str]:
    """The 1,440 speech files of the release: every emotion but neutral at both intensities."""
    return {
        f"03-01-{emotion}-{intensity}-{statement}-{repetition}-{actor}"
        for emotion, intensity, statement, repetition, actor in product(
            EMOTIONS, INTENSITIES, STATEMENTS, REPETITIONS, ACTORS
        )
        if not (emotion == "01" and intensity == "02")
    }


def _fold_of(actor: str) -> int | None:
    return next((fold for fold, actors in FOLDS.items() if actor in actors), None)


def scan_ravdess(data_dir: str | Path) -> Scan:
    """Reads every RAVDESS speech file under `data_dir`: the examples of each fold, the problems (unreadable audio,
    a file found twice) and the check against the 1,440 documented files.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: no RAVDESS speech file under it (naming what was found instead).
    """
    root = require_directory(Path(data_dir), "RAVDESS", EXPECTED)
    problems: list[Problem] = []
    matched, unmatched = match_files(find_files(root), _NAME, problems)
    speech = {stem: value for stem, value in matched.items() if stem.startswith("03-01-")}
    if not speech:
        found = [str(path.relative_to(root)) for path in (unmatched + [p for p, _ in matched.values()])[:5]]
        raise ValueError(f"{root} is not a RAVDESS release: expected {EXPECTED}; found no such file (found: {found})")
    documented = _documented_names()
    check = ReleaseCheck(
        "RAVDESS speech",
        DOCUMENTED_FILES,
        len(speech),
        missing=sorted(documented - set(speech)),
        extra=sorted(set(speech) - documented),
    )
    if len(matched) > len(speech):
        check.notes.append(f"{len(matched) - len(speech)} song or video file(s) of RAVDESS not read")
    if unmatched:
        names = ", ".join(str(path.relative_to(root)) for path in unmatched[:5])
        check.notes.append(f"{len(unmatched)} audio file(s) not named like RAVDESS files, not read: {names}")
    splits: dict[str, list[dict]] = {f"fold{fold}": [] for fold in FOLDS}
    for stem, (path, match) in sorted(speech.items()):
        message = audio_problem(path)
        fold = _fold_of(match["actor"])
        if message is None and fold is None:
            message = f"actor {match['actor']} is not one of RAVDESS's 24 actors"
        if message is not None:
            problems.append(Problem(path, None, message))
            continue
        actor = int(match["actor"])
        splits[f"fold{fold}"].append(
            {
                "id": stem,
                "audio": str(path),
                "text": STATEMENTS[match["statement"]],
                "label": EMOTIONS[match["emotion"]],
                "speaker": f"Actor_{match['actor']}",
                "gender": "M" if actor % 2 else "F",
                "intensity": INTENSITIES[match["intensity"]],
                "statement": int(match["statement"]),
                "repetition": int(match["repetition"]),
                "fold": fold,
            }
        )
    return Scan(splits, problems, check)


RELEASE = Release(
    key="ravdess",
    name="RAVDESS",
    scan=scan_ravdess,
    features=utterance_features(
        EMOTIONS.values(), intensity="string", statement="int32", repetition="int32", fold="int32"
    ),
    description="RAVDESS speech: 24 actors, 2 statements, 8 emotions at 2 intensities (Livingstone & Russo, 2018).",
    homepage="https://zenodo.org/record/1188976",
    license="CC BY-NC-SA 4.0",
    citation="Livingstone, S. R. & Russo, F. A. The Ryerson Audio-Visual Database of Emotional Speech and Song "
    "(RAVDESS). PLoS ONE 13(5): e0196391, 2018.",
    expected=EXPECTED,
    file_names=_NAME,
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
Ravdess = RELEASE.builder_class
load_ravdess = RELEASE.load
