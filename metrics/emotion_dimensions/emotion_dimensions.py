"""Dimensional emotion metrics as an `evaluate` module: the concordance correlation coefficient (CCC), Pearson's r
and the mean absolute error of one dimension's predictions (arousal, valence or dominance).

Load it by path, offline: `evaluate.load("metrics/emotion_dimensions")`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
How well one dimension of emotion (arousal, valence, dominance) is predicted, as dimensional emotion recognition
challenges and papers report it (MSP-Podcast's, AVEC's, the audEERING models'):
- CCC, Lin's concordance correlation coefficient: 2 cov(p, r) / (var(p) + var(r) + (mean(p) - mean(r))^2), with
  population moments. 1 when predictions equal references, 0 for no agreement; unlike Pearson's r it drops when
  predictions are shifted or scaled away from the references.
- Pearson's r: the linear correlation, blind to shift and scale.
- MAE: the mean absolute difference, on the scale of the values.
References that are NaN (an utterance without a value for this dimension) are left out of every figure and
counted in `num_missing`; predictions must all be numbers.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[float]`): predicted values of one dimension.
    references (`list[float]`): true values, NaN where an utterance has none.
Returns:
    ccc (`float`), pearson_r (`float`, NaN when either side is constant), mae (`float`), num_examples (`int`, the
    utterances with a reference), num_missing (`int`).
Examples:
    >>> metric = evaluate.load("metrics/emotion_dimensions")
    >>> metric.compute(predictions=[0.1, 0.5, 0.9], references=[0.0, 0.5, 1.0])["ccc"]
    0.9756097560975611
"""

_CITATION = """\
@article{lin1989concordance,
  title={A concordance correlation coefficient to evaluate reproducibility},
  author={Lin, Lawrence I-Kuei},
  journal={Biometrics},
  volume={45},
  number={1},
  pages={255--268},
  year={1989}
}
"""


class EmotionDimensions(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict:
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if not np.isfinite(predictions).all():
            bad = int((~np.isfinite(predictions)).sum())
            raise ValueError(f"{bad} predictions are not numbers (NaN or infinite).")
        present = ~np.isnan(references)
        if present.sum() < 2:
            raise ValueError(f"{int(present.sum())} references with a value: the metrics need at least two.")
        p, r = predictions[present], references[present]
        covariance = np.mean((p - p.mean()) * (r - r.mean()))
        ccc = 2 * covariance / (p.var() + r.var() + (p.mean() - r.mean()) ** 2)
        spread = p.std() * r.std()
        return {
            "ccc": float(ccc),
            "pearson_r": float(covariance / spread) if spread > 0 else float("nan"),
            "mae": float(np.abs(p - r).mean()),
            "num_examples": int(present.sum()),
            "num_missing": int((~present).sum()),
        }
