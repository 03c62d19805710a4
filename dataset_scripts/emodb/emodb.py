"""EmoDB, the Berlin Database of Emotional Speech, as a `datasets` builder for the release as downloaded.

The release (Burkhardt et al., 2005; ``download.zip`` from emodb.bilderbar.info) holds ``wav/`` with 535 files named
``SSTTTEV.wav``: speaker SS (03, 08 ... 16), text TTT (one of ten German sentences, `SENTENCES`), emotion E as a
German initial (W Ärger anger, L Langeweile boredom, E Ekel disgust, A Angst fear, F Freude happiness, T Trauer
sadness, N neutral) and version V (a, b, ...). Beside it, ``lablaut/``, ``labsilb/``, ``silb/`` and the
``erklaerung.txt`` are not needed. Files are found by name at any depth, in any format ffmpeg reads. The sentences
are emotionally neutral: the emotion is in the voice.

The standard protocol is speaker-independent: five folds of two speakers, one male and one female (`FOLDS`),
splits ``fold1`` ... ``fold5``. EmoBox's EmoDB folds split utterances, not speakers, so they are not used.
"""

from __future__ import annotations

import re
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

__all__ = ["RELEASE", "FOLDS", "EMOTIONS", "SENTENCES", "SPEAKERS", "Emodb", "load_emodb", "scan_emodb"]

EMOTIONS = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral",
}  # fmt: skip
# speaker -> (gender, age at recording), from the release's documentation
SPEAKERS = {
    "03": ("M", 31), "08": ("F", 34), "09": ("F", 21), "10": ("M", 32), "11": ("M", 26), "12": ("M", 30),
    "13": ("F", 32), "14": ("F", 35), "15": ("M", 25), "16": ("F", 31),
}  # fmt: skip
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Speaker-independent folds: fold -> its two test speakers, one male and one female. EmoBox's EmoDB folds are not
# speaker-independent (each of its five test folds holds utterances of all ten speakers), so they are not used.
FOLDS: dict[int, tuple[str, ...]] = {
    1: ("03", "08"),
    2: ("09", "10"),
    3: ("11", "13"),
    4: ("12", "14"),
    5: ("15", "16"),
}
# The 535 files of the release, by name.
RELEASE_NAMES = frozenset(
    (
        "03a01Fa 03a01Nc 03a01Wa 03a02Fc 03a02Nc 03a02Ta 03a02Wb 03a02Wc 03a04Ad 03a04Fd 03a04Lc 03a04Nc 03a04Ta "
        "03a04Wc 03a05Aa 03a05Fc 03a05Nd 03a05Tc 03a05Wa 03a05Wb 03a07Fa 03a07Fb 03a07La 03a07Nc 03a07Wc 03b01Fa "
        "03b01Lb 03b01Nb 03b01Td 03b01Wa 03b01Wc 03b02Aa 03b02La 03b02Na 03b02Tb 03b02Wb 03b03Nb 03b03Tc 03b03Wc "
        "03b09La 03b09Nc 03b09Tc 03b09Wa 03b10Ab 03b10Ec 03b10Na 03b10Nc 03b10Wb 03b10Wc 08a01Ab 08a01Fd 08a01Lc "
        "08a01Na 08a01Wa 08a01Wc 08a02Ab 08a02Ac 08a02Fe 08a02La 08a02Na 08a02Tb 08a02Wc 08a04Ff 08a04La 08a04Nc "
        "08a04Tb 08a04Wc 08a05Fe 08a05Lc 08a05Nb 08a05Ta 08a05Wa 08a07Fd 08a07La 08a07Na 08a07Ta 08a07Tb 08a07Wc "
        "08b01Aa 08b01Fd 08b01Fe 08b01Lb 08b01Na 08b01Wa 08b02Ff 08b02La 08b02Nb 08b02Tc 08b02Wd 08b03Fe 08b03Lc "
        "08b03Nb 08b03Tc 08b03Wd 08b09Ab 08b09Fd 08b09Lc 08b09Nb 08b09Tb 08b09Wa 08b09Wc 08b10Aa 08b10Fd 08b10La "
        "08b10Nc 08b10Tc 08b10Wa 09a01Ea 09a01Fa 09a01Nb 09a01Wb 09a02Ea 09a02Eb 09a02La 09a02Wb 09a04Fd 09a04La "
        "09a04Nb 09a04Wa 09a05Ed 09a05Lc 09a05Nb 09a05Tb 09a05Wb 09a05Wc 09a07Eb 09a07Na 09a07Ta 09a07Wb 09a07Wd "
        "09b01Ea 09b01Na 09b01Wb 09b02Na 09b02Tb 09b02Wc 09b02Wd 09b03Ed 09b03Fa 09b03Fd 09b03Lb 09b03Nb 09b03Ta "
        "09b03Wb 09b09Ea 09b09Nd 09b09Wa 09b10Aa 09b10Nd 09b10Wa 10a01Ac 10a01Nb 10a01Wa 10a02Ab 10a02Fa 10a02Lb "
        "10a02Na 10a02Wa 10a04Fd 10a04Nb 10a04Wa 10a04Wb 10a05Aa 10a05Ld 10a05Tb 10a05Wb 10a07Aa 10a07Ad 10a07La "
        "10a07Ta 10a07Wb 10b01Aa 10b01Ea 10b01Fa 10b01Lb 10b02Aa 10b02La 10b02Na 10b02Wb 10b03La 10b03Tb 10b03Wb "
        "10b09Ad 10b09Lb 10b09Wb 10b10Fc 10b10Lc 10b10Wa 11a01Aa 11a01Ab 11a01Ld 11a01Nd 11a01Wc 11a02Ec 11a02Fb "
        "11a02Ld 11a02Nc 11a02Tc 11a02Wc 11a04Ac 11a04Fd 11a04Nd 11a04Wc 11a05Ad 11a05Fb 11a05Fc 11a05Lc 11a05Na "
        "11a05Td 11a05Wd 11a07Ac 11a07Ld 11a07Ta 11a07Wc 11b01Ab 11b01Eb 11b01Fc 11b01Lb 11b01Nc 11b01Wd 11b02Ab "
        "11b02Fd 11b02Na 11b02Td 11b02Wb 11b03Fc 11b03Lc 11b03Nb 11b03Td 11b03Wa 11b03Wb 11b09Ad 11b09Fd 11b09Ld "
        "11b09Na 11b09Td 11b09Wa 11b10Ad 11b10Ae 11b10Ld 11b10Nc 11b10Td 11b10Wa 12a01Fb 12a01Lb 12a01Nb 12a01Wc "
        "12a02Ac 12a02Ec 12a02Nb 12a02Wa 12a02Wc 12a04Wc 12a05Ab 12a05Lb 12a05Nd 12a05Ta 12a05Wb 12a07Ac 12a07La "
        "12a07Wa 12b01Ta 12b01Wa 12b02Ad 12b02Ea 12b02Fb 12b02Na 12b02Wa 12b02Wb 12b02Wd 12b03La 12b03Ta 12b09Ac "
        "12b09Td 12b09Wc 12b10Ac 12b10Ld 12b10Wa 13a01Ac 13a01Ea 13a01Ec 13a01Fd 13a01Lb 13a01Nb 13a01Wb 13a02Ad "
        "13a02Ec 13a02Fa 13a02Lc 13a02Nc 13a02Ta 13a02Wa 13a04Ac 13a04Fc 13a04Lb 13a04Ta 13a04Wc 13a05Aa 13a05Ea "
        "13a05Lc 13a05Nb 13a05Tc 13a05Wa 13a05Wc 13a07Fd 13a07Lb 13a07Na 13a07Tc 13a07Wb 13b01Ab 13b01Ec 13b01Fc "
        "13b01Ld 13b01Nc 13b01Wa 13b02Fb 13b02Lc 13b02Nb 13b02Wa 13b03Ac 13b03Ed 13b03Fd 13b03Lb 13b03Na 13b03Td "
        "13b03Wc 13b09Ab 13b09Ec 13b09Fb 13b09Fc 13b09La 13b09Na 13b09Wa 13b10Ec 13b10Fa 13b10La 13b10Nc 13b10Wa "
        "13b10Wc 14a01Aa 14a01Ac 14a01Ea 14a01Na 14a01Wa 14a01Wc 14a02Ab 14a02Ea 14a02Fd 14a02La 14a02Nc 14a02Tb "
        "14a02Wa 14a02Wc 14a04Aa 14a04Ed 14a04Lb 14a04Tb 14a04Tc 14a04Wb 14a04Wc 14a05Aa 14a05Ac 14a05Fa 14a05Fb "
        "14a05Lb 14a05Na 14a05Ta 14a05Tc 14a05Wa 14a05Wb 14a07Aa 14a07Eb 14a07Fd 14a07Lc 14a07Ld 14a07Na 14a07Tc "
        "14a07Wc 14b01Ac 14b01Eb 14b01Fa 14b01Fc 14b01Na 14b01Wc 14b02Aa 14b02Fb 14b02Na 14b02Tc 14b02Wb 14b02Wd "
        "14b03Ad 14b03Ed 14b03Lb 14b03Ta 14b03Wb 14b09Ac 14b09Ea 14b09Fc 14b09Lb 14b09Td 14b09Wa 14b09Wc 14b10Ad "
        "14b10Eb 14b10Lb 14b10Nb 14b10Tc 14b10Wc 15a01Ea 15a01Fb 15a01La 15a01Nb 15a01Wa 15a02Ac 15a02Ea 15a02La "
        "15a02Na 15a02Ta 15a02Wb 15a02Wd 15a04Ab 15a04Ac 15a04Fd 15a04Nc 15a04Wa 15a04Wb 15a05Eb 15a05Fb 15a05Lb "
        "15a05Na 15a05Wa 15a07Ac 15a07Eb 15a07Fa 15a07Fb 15a07Ld 15a07Nc 15b01Ec 15b01Lb 15b01Na 15b01Wc 15b02Aa "
        "15b02Lb 15b02Nd 15b02Tc 15b02Wa 15b02Wc 15b03Aa 15b03Lc 15b03Nb 15b03Tc 15b03Wa 15b03Wb 15b09Ac 15b09Fa "
        "15b09La 15b09Nb 15b09Ta 15b09Wb 15b10Ac 15b10Lc 15b10Nb 15b10Nc 15b10Wa 16a01Ec 16a01Fc 16a01Lb 16a01Nc "
        "16a01Tb 16a01Wb 16a02Ea 16a02Ec 16a02Lb 16a02Nb 16a02Tc 16a02Wb 16a04Ab 16a04Ea 16a04Fa 16a04La 16a04Lc "
        "16a04Nc 16a04Tc 16a04Wb 16a04Wc 16a05Ab 16a05Ea 16a05Fc 16a05La 16a05Tb 16a05Wb 16a05Wc 16a07Ea 16a07Fa "
        "16a07Fb 16a07La 16a07Lb 16a07Nb 16a07Td 16a07Wa 16b01Aa 16b01Eb 16b01Fa 16b01La 16b01Lc 16b01Tb 16b01Wa "
        "16b01Wb 16b02Aa 16b02Eb 16b02Fd 16b02Lb 16b02Wb 16b03Ad 16b03Ea 16b03Fa 16b03Fd 16b03La 16b03Nb 16b03Ta "
        "16b03Wb 16b09Ab 16b09Eb 16b09Fb 16b09La 16b09Lb 16b09Wb 16b10Aa 16b10Eb 16b10Fb 16b10Lb 16b10Tb 16b10Td "
        "16b10Wa 16b10Wb "
    ).split()
)
_NAME = re.compile(r"(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[WLEAFTN])(?P<version>[a-z])")
EXPECTED = "the EmoDB release: a wav/ folder of SSTTTEV.wav files such as 03a01Fa.wav"


def scan_emodb(data_dir: str | Path) -> Scan:
    """Reads every EmoDB file under `data_dir`: the examples of each fold, the problems (unreadable audio, a file
    found twice, an unknown speaker or sentence) and the check against the 535 files of the release.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: no EmoDB file under it (naming what was found instead).
    """
    root = require_directory(Path(data_dir), "EmoDB", EXPECTED)
    problems: list[Problem] = []
    matched, unmatched = match_files(find_files(root), _NAME, problems)
    if not matched:
        found = [str(path.relative_to(root)) for path in unmatched[:5]]
        raise ValueError(f"{root} is not an EmoDB release: expected {EXPECTED}; found no such file (found: {found})")
    check = ReleaseCheck(
        "EmoDB",
        len(RELEASE_NAMES),
        len(matched),
        missing=sorted(RELEASE_NAMES - set(matched)),
        extra=sorted(set(matched) - RELEASE_NAMES),
    )
    if unmatched:
        names = ", ".join(str(path.relative_to(root)) for path in unmatched[:5])
        check.notes.append(f"{len(unmatched)} audio file(s) not named like EmoDB files, not read: {names}")
    fold_of = {speaker: fold for fold, speakers in FOLDS.items() for speaker in speakers}
    splits: dict[str, list[dict]] = {f"fold{fold}": [] for fold in FOLDS}
    for stem, (path, match) in sorted(matched.items()):
        speaker, text = match["speaker"], match["text"]
        if speaker not in SPEAKERS:
            message = f"speaker {speaker} is not one of EmoDB's ten ({', '.join(SPEAKERS)})"
        elif text not in SENTENCES:
            message = f"text code {text} is not one of EmoDB's ten sentences ({', '.join(SENTENCES)})"
        else:
            message = audio_problem(path)
        if message is not None:
            problems.append(Problem(path, None, message))
            continue
        gender, age = SPEAKERS[speaker]
        splits[f"fold{fold_of[speaker]}"].append(
            {
                "id": stem,
                "audio": str(path),
                "text": SENTENCES[text],
                "label": EMOTIONS[match["emotion"]],
                "speaker": speaker,
                "gender": gender,
                "age": age,
                "sentence": text,
                "version": match["version"],
                "fold": fold_of[speaker],
            }
        )
    return Scan(splits, problems, check)


RELEASE = Release(
    key="emodb",
    name="EmoDB",
    scan=scan_emodb,
    features=utterance_features(EMOTIONS.values(), age="int32", sentence="string", version="string", fold="int32"),
    description="EmoDB: 10 German actors, 10 sentences, 7 emotions (Burkhardt et al., 2005).",
    homepage="http://emodb.bilderbar.info/",
    license="free for research use (see the release)",
    citation="Burkhardt, F. et al. A database of German emotional speech. Interspeech 2005, 1517-1520.",
    expected=EXPECTED,
    file_names=_NAME,
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
Emodb = RELEASE.builder_class
load_emodb = RELEASE.load
