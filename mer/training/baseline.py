"""The frozen-feature baseline of every run: a logistic regression on the pretrained towers' pooled features.

A pretrained speech encoder already carries much of what emotion sounds like; fine-tuning it inside MER is worth its
cost only if it beats a linear read-out of the same encoder. `train.py --baseline probe` (the default) fits that
read-out on exactly the run's folds and validation speakers and reports it beside MER, so every run says whether
fine-tuning paid: the features are the mean and standard deviation over time of each tower's last layer (padding
never counted), taken once per utterance from the towers as downloaded, before any fine-tuning; the classifier is
scikit-learn's logistic regression on standardised features with balanced class weights, its regularisation chosen
on the fold's validation speakers (as MER's epoch is), and it is tested on the fold's test utterances.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch

__all__ = [
    "PROBE_CONDITIONS",
    "PROBE_C_GRID",
    "FrozenFeatures",
    "fit_probe",
    "pooled_statistics",
    "probe_fold",
    "utterance_keys",
]

logger = logging.getLogger("train")

# The probe's conditions, as they are named in the results and the tables.
PROBE_CONDITIONS = {
    "probe_audio": "linear probe: frozen speech features",
    "probe_text": "linear probe: frozen text features",
    "probe_both": "linear probe: frozen speech + text features",
}
_FEATURES_OF = {"probe_audio": ("audio",), "probe_text": ("text",), "probe_both": ("audio", "text")}
# Inverse regularisation strengths tried on the validation speakers; 1 (scikit-learn's default) in the middle.
PROBE_C_GRID = (0.01, 0.1, 1.0, 10.0)


def pooled_statistics(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, T, H)` states and their `(B, T)` mask -> `(B, 2H)`: the mean and the standard deviation over the real
    positions of each item (zero deviation for an item of one position)."""
    weights = mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
    count = weights.sum(dim=1).clamp(min=1)  # (B, 1)
    mean = (states * weights).sum(dim=1) / count  # (B, H)
    variance = (((states - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
    return torch.cat([mean, variance.sqrt()], dim=-1)


class FrozenFeatures:
    """The pooled features of the pretrained towers for any utterances of the run, each extracted once.

    `model` is a `MERModel` built around the pretrained towers (its fusion and heads are never used: only its public
    `project_audio_features` / `project_text_features`), built by `model_factory()` when first needed;
    `loader_of(dataset, config)` gives the dataset's whole utterances in batches with their `indices` (train.py's
    evaluation loader). Utterances are remembered by `utterance_keys` (the corpus's utterance ids where it has
    them), so that the folds of a run, and its seeds, share one pass.
    """

    def __init__(self, accelerator, corpus, model_factory: Callable, loader_of: Callable):
        self.accelerator = accelerator
        self.corpus = corpus
        self.model_factory = model_factory
        self.loader_of = loader_of
        self.model = None
        self.cache: dict = {}

    def of(self, dataset) -> dict[str, np.ndarray]:
        """`{"audio": (N, 2 Ha), "text": (N, 2 Ht)}` for the N utterances of `dataset`, in its order."""
        keys = utterance_keys(self.corpus, dataset)
        missing = sorted({row for row, key in enumerate(keys) if key not in self.cache})
        if missing:
            extracted = self._extract(dataset.select(missing) if len(missing) < len(keys) else dataset)
            for row, features in zip(missing, extracted, strict=True):
                self.cache[keys[row]] = features
        return {modality: np.stack([self.cache[key][modality] for key in keys]) for modality in ("audio", "text")}

    @torch.no_grad()
    def _extract(self, dataset) -> list[dict[str, np.ndarray]]:
        """Every process extracts its share of the batches; the rows are gathered, each once, in dataset order."""
        from accelerate.utils import gather_object

        if self.model is None:
            self.model = self.model_factory().to(self.accelerator.device).eval()
        loader = self.accelerator.prepare(self.loader_of(dataset, self.model.config))
        rows = []
        for batch in loader:
            indices = batch.pop("indices").tolist()
            batch.pop("labels")
            audio = self.model.project_audio_features(
                batch.get("input_values"), batch.get("audio_attention_mask"), True, batch.get("input_features")
            )
            text = self.model.project_text_features(
                batch["input_ids"], batch.get("text_attention_mask"), batch.get("token_type_ids"), True
            )
            audio_pooled = pooled_statistics(audio.hidden_states[-1], audio.attention_mask).float().cpu().numpy()
            text_pooled = pooled_statistics(text.hidden_states[-1], text.attention_mask).float().cpu().numpy()
            for index, audio_row, text_row in zip(indices, audio_pooled, text_pooled, strict=True):
                rows.append({"index": index, "audio": audio_row, "text": text_row})
        unique = {row["index"]: row for row in reversed(gather_object(rows))}
        return [{"audio": unique[i]["audio"], "text": unique[i]["text"]} for i in range(len(dataset))]


def utterance_keys(corpus, dataset) -> list[tuple]:
    """What names each utterance of `dataset` across the corpus's folds: (its corpus, its id) where the dataset has
    unique ids, else (the dataset's fingerprint, its row), which no other dataset shares."""
    if "id" in dataset.column_names:
        groups = dataset[corpus.corpus_column] if corpus.corpus_column else [None] * len(dataset)
        keys = list(zip(groups, map(str, dataset["id"]), strict=True))
        if len(set(keys)) == len(keys):
            return keys
    return [(dataset._fingerprint, row) for row in range(len(dataset))]


def fit_probe(
    features: np.ndarray, labels: np.ndarray, validation_features: np.ndarray, validation_labels: np.ndarray
) -> tuple[object, float, float]:
    """The logistic regression whose C (of `PROBE_C_GRID`) scores the best validation UA; returns it, its C and
    that UA. Ties go to the stronger regularisation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in PROBE_C_GRID:
        classifier = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        ).fit(features, labels)
        ua = float(balanced_accuracy_score(validation_labels, classifier.predict(validation_features)))
        if best is None or ua > best[2]:
            best = (classifier, c, ua)
    return best


def probe_fold(features: FrozenFeatures, split, corpus, with_text: bool = True) -> dict[str, dict]:
    """The probe of one fold: per condition of `PROBE_CONDITIONS` (text ones only `with_text`), the test rows as
    train.py's `predict` gives them (`index`, `label`, `prediction`, `probabilities`), the chosen C and its
    validation UA.

    Raises:
        ValueError: a class with fewer than two training utterances in the fold (the probe could never predict it),
            naming the fold, the class and the counts.
    """
    label_column = corpus.columns[2]
    labels = {name: np.asarray(part[label_column]) for name, part in _parts(split)}
    counts = np.bincount(labels["train"], minlength=len(corpus.label_names))
    scarce = [f"{corpus.label_names[k]} ({counts[k]})" for k in range(len(counts)) if counts[k] < 2]
    if scarce:
        raise ValueError(
            f"Fold {split.name}: the probe (--baseline probe) needs at least two training utterances of every class, "
            f"but its training split of {len(labels['train'])} has {', '.join(scarce)}. Use larger folds, fewer "
            "classes (--classes), or --baseline none."
        )
    pooled = {name: features.of(part) for name, part in _parts(split)}
    conditions = [name for name in PROBE_CONDITIONS if with_text or name == "probe_audio"]
    results = {}
    for name in conditions:
        chosen = {part: np.concatenate([pooled[part][m] for m in _FEATURES_OF[name]], axis=1) for part in pooled}
        classifier, c, validation_ua = fit_probe(
            chosen["train"], labels["train"], chosen["validation"], labels["validation"]
        )
        probabilities = _probabilities(classifier, chosen["test"], len(corpus.label_names))
        results[name] = {
            "rows": [
                {
                    "index": index,
                    "label": int(label),
                    "prediction": int(row.argmax()),
                    "probabilities": [round(float(p), 6) for p in row],
                }
                for index, (label, row) in enumerate(zip(labels["test"], probabilities, strict=True))
            ],
            "C": c,
            "validation_ua": validation_ua,
        }
    logger.info(
        "%s probe: %s",
        split.name,
        "; ".join(f"{PROBE_CONDITIONS[n]}, C = {r['C']:g}, validation UA {r['validation_ua']:.4f}" for n, r in
                  results.items()),
    )  # fmt: skip
    return results


def _parts(split) -> Iterable[tuple[str, object]]:
    return (("train", split.train), ("validation", split.validation), ("test", split.test))


def _probabilities(classifier, features: np.ndarray, num_labels: int) -> np.ndarray:
    """`(N, num_labels)` class probabilities; a class the classifier never saw gets 0."""
    known = classifier.predict_proba(features)
    full = np.zeros((len(features), num_labels))
    full[:, classifier.classes_] = known
    return full
