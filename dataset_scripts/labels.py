"""One label space for every corpus: each corpus's own emotion names mapped to a shared set.

`SHARED_CLASSES` is the wider set. Its first four, `IEMOCAP_CLASSES`, are the classes of the IEMOCAP protocol
(neutral, happy with excited, angry, sad), and ``--classes neutral,happy,angry,sad`` means the same for every
corpus. A corpus label that maps to None (IEMOCAP's ``oth`` and ``xxx``, MSP-Podcast's ``O`` and ``X``) has no
shared class; a label whose class is not among the chosen ones is dropped and counted, never guessed.

How each corpus falls into the shared set (its own name -> shared class):

| shared class | IEMOCAP | RAVDESS | CREMA-D | TESS | EmoDB | MELD | MSP-Podcast |
|---|---|---|---|---|---|---|---|
| neutral | neu | neutral | NEU | neutral | N (neutral) | neutral | N |
| happy | hap, exc | happy | HAP | happy | F (happiness) | joy | H |
| angry | ang | angry | ANG | angry | W (anger) | anger | A |
| sad | sad | sad | SAD | sad | T (sadness) | sadness | S |
| fearful | fea | fearful | FEA | fear | A (fear) | fear | F |
| disgusted | dis | disgust | DIS | disgust | E (disgust) | disgust | D |
| surprised | sur | surprised | - | ps (pleasant surprise) | - | surprise | U |
| calm | - | calm | - | - | - | - | - |
| bored | - | - | - | - | L (boredom) | - | - |
| frustrated | fru | - | - | - | - | - | - |
| contemptuous | - | - | - | - | - | - | C |

Choices: RAVDESS's calm is its own class, not neutral (the two are acted apart, and merging them would make neutral
twice as frequent as in the release); IEMOCAP's excited joins happy, as the IEMOCAP protocol does; TESS's pleasant
surprise is surprise.
"""

from __future__ import annotations

__all__ = ["CORPUS_LABELS", "IEMOCAP_CLASSES", "SHARED_CLASSES", "parse_classes", "shared_label"]

SHARED_CLASSES = (
    "neutral", "happy", "angry", "sad", "fearful", "disgusted", "surprised", "calm", "bored", "frustrated",
    "contemptuous",
)  # fmt: skip
IEMOCAP_CLASSES = SHARED_CLASSES[:4]

# corpus -> its own label (as its builder yields it) -> shared class, or None for labels with no shared class
CORPUS_LABELS: dict[str, dict[str, str | None]] = {
    "iemocap": {
        "neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad", "fea": "fearful",
        "dis": "disgusted", "sur": "surprised", "fru": "frustrated", "oth": None, "xxx": None,
    },
    "ravdess": {
        "neutral": "neutral", "calm": "calm", "happy": "happy", "sad": "sad", "angry": "angry", "fearful": "fearful",
        "disgust": "disgusted", "surprised": "surprised",
    },
    "cremad": {
        "NEU": "neutral", "HAP": "happy", "ANG": "angry", "SAD": "sad", "FEA": "fearful", "DIS": "disgusted",
    },
    "tess": {
        "neutral": "neutral", "happy": "happy", "angry": "angry", "sad": "sad", "fear": "fearful",
        "disgust": "disgusted", "ps": "surprised",
    },
    "emodb": {
        "neutral": "neutral", "happiness": "happy", "anger": "angry", "sadness": "sad", "fear": "fearful",
        "disgust": "disgusted", "boredom": "bored",
    },
    "meld": {
        "neutral": "neutral", "joy": "happy", "anger": "angry", "sadness": "sad", "fear": "fearful",
        "disgust": "disgusted", "surprise": "surprised",
    },
    "msp_podcast": {
        "N": "neutral", "H": "happy", "A": "angry", "S": "sad", "F": "fearful", "D": "disgusted", "U": "surprised",
        "C": "contemptuous", "O": None, "X": None,
    },
}  # fmt: skip


def shared_label(corpus: str, label: str) -> str | None:
    """The shared class of `corpus`'s label `label`, or None when it has none.

    Raises:
        ValueError: an unknown corpus, or a label the corpus does not have (naming the ones it has).
    """
    if corpus not in CORPUS_LABELS:
        raise ValueError(f"no label mapping for corpus {corpus!r}; the mapped corpora are {sorted(CORPUS_LABELS)}")
    mapping = CORPUS_LABELS[corpus]
    if label not in mapping:
        raise ValueError(f"{corpus} has no label {label!r}; its labels are {sorted(mapping)}")
    return mapping[label]


def parse_classes(text: str) -> list[str]:
    """``"neutral,happy,angry,sad"`` -> the classes in that order; ``"all"`` -> every shared class.

    Raises:
        ValueError: a name outside `SHARED_CLASSES`, a class given twice, or fewer than two classes.
    """
    if text.strip() == "all":
        return list(SHARED_CLASSES)
    classes = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in classes if name not in SHARED_CLASSES]
    if unknown:
        raise ValueError(f"--classes: {unknown} are not shared classes; choose from {list(SHARED_CLASSES)} or all")
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        raise ValueError(f"--classes: {repeated} given twice")
    if len(classes) < 2:
        raise ValueError(f"--classes {text!r}: at least two classes are needed")
    return classes
