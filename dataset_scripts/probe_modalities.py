"""Linear probes on simple features: does the synthetic corpus need both modalities, as designed?

    python -m dataset_scripts.probe_modalities --out /tmp/mer_probe --per-dialog 20 --seed 0
    python -m dataset_scripts.probe_modalities --data_dir /path/to/corpus      # an existing corpus

Generates a corpus (unless `--data_dir` is given), builds it with `load_iemocap` (4class), and fits a logistic
regression per fold of leave-one-session-out on three feature sets:

* audio: duration, pitch level / spread / range, voicing and loudness statistics, and an energy-peak rate, all
  from the waveform alone (no transcript, so no words-per-second);
* text: bag of words of the transcript;
* both: the two concatenated.

By design text alone cannot tell angry from sad and audio alone cannot tell happy from angry, so each single
modality should stop near 75% while both together come close to 100%. Reports WA (accuracy) and UA (mean per-class
recall), mean over the five test sessions, plus the time to generate and to build the corpus.

The dimensions get the same question (`dimension_probe`): a ridge regression per feature set and dimension, leave
one session out, scored by the concordance correlation (CCC) of the pooled predictions with the ratings mapped to
[0, 1]. By design audio predicts arousal and words predict valence, each only weakly the other.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dataset_scripts.dimensions import CORPUS_SCALES, dimension_metric
from dataset_scripts.iemocap import load_iemocap
from dataset_scripts.synthetic import generate_corpus
from modeling_mer.configuration_mer import DIMENSIONS

__all__ = [
    "audio_features",
    "dimension_probe",
    "loso_ccc",
    "loso_scores",
    "main",
    "modality_features",
    "probe",
]

logger = logging.getLogger(__name__)

_FRAME, _HOP = 640, 160  # 40 ms windows every 10 ms at 16 kHz
_F0_MIN, _F0_MAX = 60.0, 500.0


def _frames(signal: np.ndarray) -> np.ndarray:
    if len(signal) < _FRAME:
        signal = np.pad(signal, (0, _FRAME - len(signal)))
    count = 1 + (len(signal) - _FRAME) // _HOP
    index = np.arange(_FRAME)[None, :] + _HOP * np.arange(count)[:, None]
    return signal[index] * np.hanning(_FRAME)


def audio_features(signal: np.ndarray, sampling_rate: int = 16_000) -> np.ndarray:
    """Twelve prosodic statistics of one mono waveform (float, 16 kHz). Loudness is normalised out first."""
    if sampling_rate != 16_000:
        raise ValueError(f"audio_features expects 16 kHz audio, got {sampling_rate} Hz")
    signal = signal / (np.sqrt(np.mean(signal**2)) + 1e-8)  # like a feature extractor's normalisation
    frames = _frames(signal)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-8)
    spectrum = np.abs(np.fft.rfft(frames, n=2 * _FRAME)) ** 2
    autocorr = np.fft.irfft(spectrum)[:, :_FRAME]
    autocorr /= autocorr[:, :1] + 1e-8
    lags = np.arange(int(sampling_rate / _F0_MAX), int(sampling_rate / _F0_MIN))
    best = lags[np.argmax(autocorr[:, lags], axis=1)]
    strength = autocorr[np.arange(len(frames)), best]
    voiced = (strength > 0.45) & (energy_db > energy_db.max() - 35)
    semitones = 12 * np.log2(sampling_rate / best[voiced] / 100.0) if voiced.any() else np.zeros(1)
    # syllable-like rate: peaks of the smoothed voiced-energy envelope per second
    envelope = np.convolve(np.where(voiced, energy_db, energy_db.min()), np.ones(5) / 5, mode="same")
    peaks = np.sum((envelope[1:-1] > envelope[:-2]) & (envelope[1:-1] >= envelope[2:]) & voiced[1:-1])
    seconds = len(signal) / sampling_rate
    return np.array(
        [
            np.log(seconds),
            peaks / seconds,
            voiced.mean(),
            np.median(semitones),
            semitones.std(),
            np.percentile(semitones, 90) - np.percentile(semitones, 10),
            np.abs(np.diff(semitones)).mean() if len(semitones) > 1 else 0.0,
            energy_db.std(),
            np.percentile(energy_db, 90) - np.percentile(energy_db, 10),
            strength[voiced].mean() if voiced.any() else 0.0,
            np.mean(np.abs(np.diff(np.sign(signal)))) / 2,  # zero-crossing rate
            np.log(np.sum(spectrum.mean(0) * np.arange(spectrum.shape[1])) / np.sum(spectrum.mean(0))),
        ]
    )


def modality_features(dataset) -> dict[str, np.ndarray]:
    """Feature matrices ``audio``, ``text`` (bag of words), ``both``, plus ``label``, ``session`` and the dimensions'
    (``arousal``, ``valence``, ``dominance``, mapped to [0, 1]) vectors, of every row of every split of a
    `load_iemocap` `DatasetDict`."""
    rows = [row for split in dataset.values() for row in split]
    audio = np.stack(
        [audio_features(row["audio"].get_all_samples().data.mean(0).numpy().astype(np.float64)) for row in rows]
    )
    ids = [row["id"] for row in rows]
    words = CountVectorizer(token_pattern=r"(?u)\b\w+\b", binary=True)
    text = words.fit_transform([row["text"] for row in rows]).toarray().astype(np.float64)
    return {
        "audio": audio,
        "text": text,
        "both": np.hstack([audio, text]),
        "label": np.array([row["label"] for row in rows]),
        "session": np.array([row["session"] for row in rows]),
        **{
            name: np.array(CORPUS_SCALES["iemocap"].to_unit([row[name] for row in rows], ids, name, "IEMOCAP"))
            for name in DIMENSIONS
        },
    }


def loso_scores(features: np.ndarray, labels: np.ndarray, sessions: np.ndarray) -> tuple[float, float]:
    """(WA, UA) of a standardised logistic regression, mean over leave-one-session-out folds."""
    was, uas = [], []
    for session in np.unique(sessions):
        train, test = sessions != session, sessions == session
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
        model.fit(features[train], labels[train])
        predicted = model.predict(features[test])
        was.append(np.mean(predicted == labels[test]))
        uas.append(balanced_accuracy_score(labels[test], predicted))
    return float(np.mean(was)), float(np.mean(uas))


def loso_ccc(features: np.ndarray, targets: np.ndarray, sessions: np.ndarray) -> float:
    """CCC of a standardised ridge regression's leave-one-session-out predictions, pooled over the test sessions."""
    predictions = np.empty_like(targets)
    for session in np.unique(sessions):
        train, test = sessions != session, sessions == session
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 12)))
        model.fit(features[train], targets[train])
        predictions[test] = model.predict(features[test])
    return dimension_metric().compute(predictions=predictions, references=targets)["ccc"]


def dimension_probe(dataset) -> dict[str, dict[str, float]]:
    """Feature set (audio, text, both) -> dimension -> leave-one-session-out CCC, for a `load_iemocap` DatasetDict."""
    matrices = modality_features(dataset)
    sessions = matrices["session"]
    return {
        name: {dimension: loso_ccc(matrices[name], matrices[dimension], sessions) for dimension in DIMENSIONS}
        for name in ("audio", "text", "both")
    }


def probe(dataset) -> dict[str, tuple[float, float]]:
    """Leave-one-session-out (WA, UA) of logistic regressions on audio, text and both, for a 4class `DatasetDict`."""
    matrices = modality_features(dataset)
    return {
        name: loso_scores(matrices[name], matrices["label"], matrices["session"]) for name in ("audio", "text", "both")
    }


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, help="an existing corpus; otherwise one is generated")
    parser.add_argument("--out", type=Path, help="where to generate the corpus (default: a temporary directory)")
    parser.add_argument("--per-dialog", type=int, default=20, help="utterances per dialog when generating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="concurrent espeak-ng processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = args.out or Path(scratch) / "corpus"
            summary = generate_corpus(data_dir, args.per_dialog, args.seed, args.workers, overwrite=True)
            logger.info("generate: %d utterances in %.1f s", summary.num_utterances, summary.seconds)
        began = time.perf_counter()
        dataset = load_iemocap(data_dir, "4class", cache_dir=Path(scratch) / "cache")
        logger.info(
            "build (load_iemocap 4class): %d utterances in %.1f s",
            sum(len(s) for s in dataset.values()),
            time.perf_counter() - began,
        )
        scores, dimensions = probe(dataset), dimension_probe(dataset)
    logger.info("leave-one-session-out logistic regression, mean of 5 folds:")
    for name, (wa, ua) in scores.items():
        logger.info("  %-5s  WA %.3f  UA %.3f", name, wa, ua)
    logger.info("leave-one-session-out ridge regression, CCC of the pooled predictions:")
    for name, cccs in dimensions.items():
        logger.info("  %-5s  %s", name, "  ".join(f"{dimension} {ccc:.3f}" for dimension, ccc in cccs.items()))
    return {"classes": scores, "dimensions": dimensions}


if __name__ == "__main__":
    main()
