"""Speech emotion recognition metrics as an `evaluate` module: WA, UA, macro-F1 and the confusion matrix.

Load it by path, offline: `evaluate.load("metrics/emotion_recognition")`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
The figures speech emotion recognition papers report (IEMOCAP leave-one-session-out studies among them):
- WA, weighted accuracy: the share of utterances classified correctly (plain accuracy).
- UA, unweighted accuracy: the mean of the per-class recalls, so every emotion counts the same however rare it is.
  Classes with no reference utterance are left out of the mean (their recall is undefined).
- micro-F1: F1 over all utterances pooled (every utterance has one reference and one prediction, so it equals WA;
  reported because benchmarks such as EmoBox list it beside macro-F1).
- macro-F1: the mean F1 over the classes that occur in the references or the predictions.
- the confusion matrix: rows are references, columns predictions.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[int]`): predicted class indices.
    references (`list[int]`): true class indices.
    num_labels (`int`, *optional*): number of classes; sizes the confusion matrix (default: the largest index + 1).
    label_names (`list[str]`, *optional*): class names, used as keys of `per_class_recall`.
Returns:
    wa (`float`), ua (`float`), micro_f1 (`float`), macro_f1 (`float`), confusion_matrix (`list[list[int]]`),
    per_class_recall (`dict[str, float]`, classes with references only), num_examples (`int`).
Examples:
    >>> metric = evaluate.load("metrics/emotion_recognition")
    >>> metric.compute(predictions=[0, 1, 1, 3], references=[0, 1, 2, 3], num_labels=4)["ua"]
    0.75
"""

_CITATION = """\
@inproceedings{sun2023auxiliary,
  title={Using Auxiliary Tasks in Multimodal Fusion of Wav2vec 2.0 and BERT for Multimodal Emotion Recognition},
  author={Sun, Dekai and He, Yancheng and Han, Jiqing},
  booktitle={ICASSP 2023},
  year={2023}
}
"""


class EmotionRecognition(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        num_labels: int | None = None,
        label_names: list[str] | None = None,
    ) -> dict:
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if len(references) == 0:
            raise ValueError("No references: the metric needs at least one utterance.")
        largest = int(max(predictions.max(), references.max()))
        num_labels = num_labels if num_labels is not None else largest + 1
        if min(predictions.min(), references.min()) < 0 or largest >= num_labels:
            raise ValueError(f"Class indices must lie in [0, {num_labels}); got values up to {largest}.")
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"label_names has {len(label_names)} names for {num_labels} classes.")
        names = label_names or [str(index) for index in range(num_labels)]

        confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        correct = np.diag(confusion)
        per_reference = confusion.sum(axis=1)
        per_prediction = confusion.sum(axis=0)

        present = per_reference > 0
        recall = correct[present] / per_reference[present]
        occurring = present | (per_prediction > 0)
        f1 = 2 * correct[occurring] / (per_reference[occurring] + per_prediction[occurring])
        # Micro-averaged over classes: 2 TP / (2 TP + FP + FN), summed over every class.
        micro_f1 = 2 * correct.sum() / (per_reference.sum() + per_prediction.sum())
        return {
            "wa": float(correct.sum() / len(references)),
            "ua": float(recall.mean()),
            "micro_f1": float(micro_f1),
            "macro_f1": float(f1.mean()),
            "confusion_matrix": confusion.tolist(),
            "per_class_recall": {names[i]: float(r) for i, r in zip(np.flatnonzero(present), recall, strict=True)},
            "num_examples": len(references),
        }
