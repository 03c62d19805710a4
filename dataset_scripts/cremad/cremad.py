"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset, as a `datasets` builder for the release as
downloaded.

The release (Cao et al., IEEE Trans. Affective Computing 5(4), 2014; github.com/CheyneyComputerScience/CREMA-D,
media in Git LFS) holds ``AudioWAV/`` with 7,442 clips named ``<ActorID>_<Sentence>_<Emotion>_<Level>.wav``, e.g.
``1001_DFA_ANG_XX.wav``: actor 1001 ... 1091, one of twelve sentences (`SENTENCES`), one of six emotions (ANG anger,
DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad) and the emotion level (LO low, MD medium, HI high, XX
unspecified; only "It's eleven o'clock", IEO, was recorded at three levels, and its neutral at XX). Beside it,
``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity) gives each actor's sex and age; ``AudioMP3/`` (what
the raters heard) and ``VideoFlash/`` hold other copies of the same clips.

The grid of 91 actors x 82 combinations has 7,462 names; the release lacks 20 of them (`RELEASE_LACKS`, from its
``SentenceFilenames.csv``), so its 7,442 clips are 1,271 of each emotion but neutral (1,087). Files are found by name
at any depth in any format ffmpeg reads; a clip present both as a WAV and in ``AudioMP3/`` is read from the WAV.
Faults of the release the scan handles: ``1076_MTI_SAD_XX`` has no audio (the release's README) and is left out;
``1040_ITH_SAD_X``, the old spelling of ``1040_ITH_SAD_XX`` (renamed upstream in October 2022, issue #6), is read
as that clip; a ZIP download holds Git LFS pointers instead of audio, and they are reported as such; clips with
byte-identical audio (reported for three pairs under two emotions each) are kept as released and named in the check.

The standard protocol is speaker-independent. EmoBox (Ma et al., Interspeech 2024) has no speaker folds for CREMA-D:
its ``data/cremad/fold_1`` is a single split that draws 25% of each emotion at random and disregards the actor
(its ``write_folds`` does so for any corpus whose actors do not all have the same emotion counts), so the same
actors are in its train and test sets. This builder uses five folds of actors instead (`SPEAKER_FOLDS`), balanced
by gender: the 48 men in actor order, then the 43 women, dealt in turn to folds 1 ... 5 (19, 18, 18, 18, 18 actors;
10/9, 10/8, 10/8, 9/9, 9/9 men/women); splits ``fold1`` ... ``fold5``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import defaultdict
from itertools import product
from pathlib import Path

import soundfile as sf

from ..labels import CORPUS_LABELS
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

__all__ = [
    "RELEASE",
    "ACTORS", "DOCUMENTED_FILES", "EMOTIONS", "LEVELS", "RELEASE_LACKS", "RELEASE_NAMES", "SENTENCES",
    "SPEAKER_FOLDS", "Cremad", "load_cremad", "scan_cremad",
]  # fmt: skip

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = tuple(CORPUS_LABELS["cremad"])  # NEU HAP ANG SAD FEA DIS, the codes of the file names
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
ACTORS = tuple(str(actor) for actor in range(1001, 1092))
# Five folds of actors, balanced by gender (VideoDemographics.csv): the men in actor order, then the women, dealt in
# turn to folds 1 ... 5. EmoBox's CREMA-D split is not speaker-independent (see the module docstring).
SPEAKER_FOLDS: dict[int, tuple[str, ...]] = {
    1: (
        "1001", "1004", "1010", "1016", "1021", "1026", "1030", "1034", "1040", "1048", "1049", "1056", "1062",
        "1068", "1072", "1078", "1080", "1087", "1091",
    ),
    2: (
        "1005", "1006", "1012", "1017", "1024", "1027", "1035", "1037", "1041", "1050", "1052", "1058", "1064",
        "1069", "1073", "1079", "1081", "1088",
    ),
    3: (
        "1007", "1011", "1013", "1019", "1025", "1031", "1036", "1042", "1043", "1051", "1053", "1060", "1065",
        "1070", "1074", "1082", "1083", "1090",
    ),
    4: (
        "1002", "1008", "1014", "1018", "1022", "1028", "1032", "1038", "1044", "1046", "1054", "1057", "1061",
        "1066", "1071", "1075", "1084", "1085",
    ),
    5: (
        "1003", "1009", "1015", "1020", "1023", "1029", "1033", "1039", "1045", "1047", "1055", "1059", "1063",
        "1067", "1076", "1077", "1086", "1089",
    ),
}  # fmt: skip


def _grid() -> set[str]:
    """Every name the design allows: IEO at LO/MD/HI for five emotions and XX for neutral, the others at XX."""
    combinations = [("IEO", "NEU", "XX")]
    combinations += [
        ("IEO", emotion, level) for emotion in EMOTIONS if emotion != "NEU" for level in ("LO", "MD", "HI")
    ]
    combinations += [(sentence, emotion, "XX") for sentence in SENTENCES if sentence != "IEO" for emotion in EMOTIONS]
    return {f"{actor}_{s}_{e}_{lv}" for actor, (s, e, lv) in product(ACTORS, combinations)}


# The 20 names of the grid that the release does not have (it lists its 7,442 clips in SentenceFilenames.csv).
RELEASE_LACKS = frozenset(
    ["1002_TIE_NEU_XX", "1076_ITS_NEU_XX"]
    + [f"{actor}_{sentence}_{emotion}_XX" for actor, sentence in (("1008", "WSI"), ("1009", "MTI"), ("1019", "ITH"))
       for emotion in EMOTIONS]
)  # fmt: skip
RELEASE_NAMES = frozenset(_grid() - RELEASE_LACKS)
DOCUMENTED_FILES = 7442
# Clips the release's README documents as having no audio: left out, and the check says so.
NO_AUDIO = {"1076_MTI_SAD_XX": "no audio, very short (the release's README)"}
# A clip is one short sentence (about 1-5 s); a longer WAV holds more than that (the release's README says the MP3
# and video of 1064_IEO_DIS_MD are a minute of every IEO display).
LONG_CLIP_SECONDS = 10.0
# Names the release once had, and the clip each names now.
OLD_NAMES = {"1040_ITH_SAD_X": "1040_ITH_SAD_XX"}
_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{1,2})")
_LFS_POINTER = b"version https://git-lfs"
# Folders of the release holding other copies of the clips: the MP3s the raters heard, and the videos.
_MP3_FOLDER, _VIDEO_FOLDER = "audiomp3", "videoflash"
DEMOGRAPHICS = "VideoDemographics.csv"
EXPECTED = (
    "the CREMA-D release: AudioWAV/ holding <ActorID>_<Sentence>_<Emotion>_<Level>.wav files such as "
    "1001_DFA_ANG_XX.wav"
)


def _in_folder(path: Path, root: Path, folder: str) -> bool:
    return folder in (part.lower() for part in path.relative_to(root).parts[:-1])


def _names(stems, limit: int = 10) -> str:
    stems = sorted(stems)
    return ", ".join(stems[:limit]) + (f", ... and {len(stems) - limit} more" if len(stems) > limit else "")


def _read_demographics(root: Path, problems: list[Problem]) -> tuple[dict[str, dict], Path | None]:
    """ActorID -> gender, age, race, ethnicity from the first ``VideoDemographics.csv`` under `root` (at any depth),
    and its path; ({}, None) when there is none. Rows it cannot read are problems (line numbered)."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d != "__MACOSX"]
        found += [Path(directory) / name for name in files if name.lower() == DEMOGRAPHICS.lower()]
    if not found:
        return {}, None
    path = min(found, key=lambda candidate: (len(candidate.parts), candidate))
    actors: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = {"ActorID", "Age", "Sex", "Race", "Ethnicity"} - set(reader.fieldnames or [])
        if missing:
            expected = "expected ActorID, Age, Sex, Race, Ethnicity"
            problems.append(Problem(path, 1, f"no column {', '.join(sorted(missing))}; {expected}", 0))
            return {}, path
        for line, row in enumerate(reader, start=2):
            fields = {key: (value or "").strip() for key, value in row.items() if isinstance(key, str)}
            actor, sex, age = fields["ActorID"], fields["Sex"], fields["Age"]
            if actor not in ACTORS or sex not in ("Male", "Female") or not (age.isdigit() or not age):
                expected = "expected an ActorID 1001-1091, Sex Male or Female and a whole-number Age"
                problems.append(Problem(path, line, f"unreadable row {','.join(fields.values())!r}: {expected}", 0))
                continue
            actors[actor] = {
                "gender": sex[0],
                "age": int(age) if age else None,
                "race": fields["Race"],
                "ethnicity": fields["Ethnicity"],
            }
    return actors, path


def _lfs_pointer(path: Path) -> bool:
    """`path` is a Git LFS pointer (a small text file) instead of the audio it stands for."""
    if path.stat().st_size > 1024:
        return False
    with open(path, "rb") as file:
        return file.read(len(_LFS_POINTER)) == _LFS_POINTER


def _wav_seconds(path: Path) -> float | None:
    """The length a WAV's header gives (to name the release's overlong clips), or None for other formats and
    unreadable files (`audio_problem` says why)."""
    if path.suffix.lower() != ".wav":
        return None
    try:
        info = sf.info(str(path))
    except RuntimeError:  # soundfile's errors; unreadable files are audio_problem's to describe
        return None
    return info.frames / info.samplerate


def _identical_audio(clips: dict[str, Path]) -> list[list[str]]:
    """Groups of clips whose files are byte for byte the same. Only files of one actor and sentence with the same
    size are hashed (that is where the release's copies are), so the scan reads few files."""
    by_size: dict[tuple, list[str]] = defaultdict(list)
    for stem, path in clips.items():
        by_size[(stem[:8], path.stat().st_size)].append(stem)
    groups = []
    for stems in by_size.values():
        if len(stems) < 2:
            continue
        by_hash: dict[str, list[str]] = defaultdict(list)
        for stem in stems:
            by_hash[hashlib.sha256(clips[stem].read_bytes()).hexdigest()].append(stem)
        groups += [sorted(same) for same in by_hash.values() if len(same) > 1]
    return sorted(groups)


def _choose_files(root: Path, problems: list[Problem], notes: list[str]) -> tuple[dict[str, Path], list[Path]]:
    """Clip name -> its file: the release's WAV (or any re-encoding outside ``AudioMP3/``) first, the MP3 the raters
    heard only where there is nothing else; videos are not read. Also returns the files not named like clips."""
    video, mp3, others = [], [], []
    for path in find_files(root):
        if _in_folder(path, root, _VIDEO_FOLDER):
            video.append(path)
        else:
            (mp3 if _in_folder(path, root, _MP3_FOLDER) else others).append(path)
    chosen, unmatched = match_files(others, _NAME, problems)
    from_mp3, unmatched_mp3 = match_files(mp3, _NAME, problems)
    only_mp3 = sorted(set(from_mp3) - set(chosen))
    if only_mp3:
        notes.append(f"{len(only_mp3)} clip(s) read from AudioMP3/ (no other copy): {_names(only_mp3)}")
    if len(from_mp3) > len(only_mp3):
        notes.append(f"{len(from_mp3) - len(only_mp3)} MP3 copies in AudioMP3/ not read (their WAVs are)")
    if video:
        notes.append(f"{len(video)} file(s) in VideoFlash/ not read (video)")
    clips = {stem: path for stem, (path, _) in chosen.items()} | {stem: from_mp3[stem][0] for stem in only_mp3}
    # the release's old misspelling of a name is the clip it names now, unless that is here too
    for old, new in OLD_NAMES.items():
        if old in clips:
            if new in clips:
                problems.append(
                    Problem(clips[old], None, f"{old} is the old name of {new}, which is here too: {clips[new]}")
                )
            else:
                notes.append(f"{clips[old].name} read as {new} (its name in the release since October 2022)")
                clips[new] = clips[old]
            del clips[old]
    return clips, unmatched + unmatched_mp3


def _clip_problem(stem: str, fold_of: dict[str, int]) -> str | None:
    """Why the name `stem` cannot be labelled, or None."""
    actor, sentence, emotion, level = stem.split("_")
    if actor not in fold_of:
        return f"actor {actor} is not one of CREMA-D's 91 (1001-1091)"
    if sentence not in SENTENCES:
        return f"sentence {sentence} is not one of CREMA-D's twelve ({', '.join(SENTENCES)})"
    if emotion not in EMOTIONS:
        return f"emotion {emotion} is not one of CREMA-D's six ({', '.join(EMOTIONS)})"
    if level not in LEVELS:
        return f"level {level} is not one of CREMA-D's ({', '.join(LEVELS)})"
    return None


def scan_cremad(data_dir: str | Path) -> Scan:
    """Reads every CREMA-D clip under `data_dir`: the examples of each fold, the problems (unreadable audio, Git LFS
    pointers, a clip found twice, a name with an unknown actor or code, an unreadable ``VideoDemographics.csv`` row)
    and the check against the 7,442 clips of the release.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: no CREMA-D clip under it (naming what was found instead), or only Git LFS pointers.
    """
    root = require_directory(Path(data_dir), "CREMA-D", EXPECTED)
    problems: list[Problem] = []
    notes: list[str] = []
    clips, unmatched = _choose_files(root, problems, notes)
    if not clips:
        found = [str(path.relative_to(root)) for path in unmatched[:5]]
        raise ValueError(f"{root} is not a CREMA-D release: expected {EXPECTED}; found no such file (found: {found})")
    pointers = {stem for stem, path in clips.items() if _lfs_pointer(path)}
    if pointers == set(clips):
        raise ValueError(
            f"{root} holds Git LFS pointers, not audio ({len(pointers)} files such as {clips[min(pointers)]}): the "
            "release keeps its media in Git LFS, which a ZIP download or a clone without git-lfs does not fetch; "
            "get it with `git lfs install && git clone https://github.com/CheyneyComputerScience/CREMA-D.git`"
        )
    check = ReleaseCheck(
        "CREMA-D",
        DOCUMENTED_FILES,
        len(clips),
        missing=sorted(RELEASE_NAMES - set(clips)),
        extra=sorted(set(clips) - RELEASE_NAMES),
        notes=notes,
    )
    check.notes.insert(
        0,
        f"the grid of 91 actors x 82 combinations has 7,462 names: the release itself lacks {len(RELEASE_LACKS)} "
        f"({_names(RELEASE_LACKS, 20)}), this copy lacks {len(check.missing)} of the release's {DOCUMENTED_FILES}",
    )
    if RELEASE_LACKS & set(clips):
        check.notes.append(f"in the grid but not in the release: {_names(RELEASE_LACKS & set(clips))}")
    if unmatched:
        names = ", ".join(str(path.relative_to(root)) for path in unmatched[:5])
        check.notes.append(f"{len(unmatched)} audio file(s) not named like CREMA-D clips, not read: {names}")
    actors, demographics = _read_demographics(root, problems)
    if demographics is None:
        check.notes.append(f"no {DEMOGRAPHICS} under {root}: gender, age, race and ethnicity are left empty")
    else:
        absent = sorted(({stem[:4] for stem in clips} & set(ACTORS)) - set(actors))
        if absent:
            check.notes.append(f"{len(absent)} actor(s) not in {demographics}: {_names(absent)}; gender left empty")
    fold_of = {actor: fold for fold, fold_actors in SPEAKER_FOLDS.items() for actor in fold_actors}
    splits: dict[str, list[dict]] = {f"fold{fold}": [] for fold in SPEAKER_FOLDS}
    readable: dict[str, Path] = {}
    long_clips: list[str] = []
    for stem, path in sorted(clips.items()):
        if stem in NO_AUDIO:
            check.notes.append(f"{stem} left out: {NO_AUDIO[stem]}")
            continue
        message = _clip_problem(stem, fold_of)
        if message is None and stem in pointers:
            message = "a Git LFS pointer, not audio: fetch the release's media with git-lfs"
        seconds = _wav_seconds(path) if message is None else None
        if message is None:
            message = audio_problem(path)
        if message is not None:
            problems.append(Problem(path, None, message))
            continue
        if seconds is not None and seconds > LONG_CLIP_SECONDS:
            long_clips.append(f"{stem} ({seconds:.1f} s)")
        readable[stem] = path
        actor, sentence, emotion, level = stem.split("_")
        known = actors.get(actor, {})
        splits[f"fold{fold_of[actor]}"].append(
            {
                "id": stem,
                "audio": str(path),
                "text": SENTENCES[sentence],
                "label": emotion,
                "speaker": actor,
                "gender": known.get("gender", ""),
                "age": known.get("age"),
                "race": known.get("race", ""),
                "ethnicity": known.get("ethnicity", ""),
                "sentence": sentence,
                "level": LEVELS[level],
                "fold": fold_of[actor],
            }
        )
    if long_clips:
        check.notes.append(
            f"{len(long_clips)} clip(s) longer than {LONG_CLIP_SECONDS:.0f} s, more than one sentence, kept as "
            f"released: {_names(long_clips)}"
        )
    identical = _identical_audio(readable)
    if identical:
        listed = "; ".join(" = ".join(group) for group in identical)
        check.notes.append(f"{len(identical)} group(s) of clips with byte-identical audio, kept as released: {listed}")
    return Scan(splits, problems, check)


RELEASE = Release(
    key="cremad",
    name="CREMA-D",
    scan=scan_cremad,
    features=utterance_features(
        EMOTIONS, age="int32", race="string", ethnicity="string", sentence="string", level="string", fold="int32"
    ),
    description="CREMA-D: 91 actors, 12 sentences, 6 emotions at up to 4 levels, 7,442 clips (Cao et al., 2014).",
    homepage="https://github.com/CheyneyComputerScience/CREMA-D",
    license="ODbL 1.0 (database), DbCL 1.0 (contents)",
    citation="Cao, H., Cooper, D. G., Keutmann, M. K., Gur, R. C., Nenkova, A. & Verma, R. CREMA-D: Crowd-sourced "
    "Emotional Multimodal Actors Dataset. IEEE Transactions on Affective Computing 5(4): 377-390, 2014.",
    expected=EXPECTED,
    file_names=_NAME,
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
Cremad = RELEASE.builder_class
load_cremad = RELEASE.load
