"""train.py's defaults for the settings that depend on the audio tower, chosen per tower family from measurements.

A setting the user passes always wins; the others come from the row of `MEASURED_DEFAULTS` for the audio tower's
family, and a family without a measured row gets `GENERIC_DEFAULTS` with a warning that names them. Each measured
row says which measurement stands behind it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["GENERIC_DEFAULTS", "MEASURED_DEFAULTS", "TrainingDefaults", "resolve_training_defaults"]

logger = logging.getLogger("train")


@dataclass(frozen=True)
class TrainingDefaults:
    """The settings of a training recipe that depend on the audio tower (train.py flags of the same names, and
    `use_weighted_layer_sum` of MERConfig)."""

    num_epochs: int
    early_stopping_patience: int
    learning_rate: float  # projections, fusion and heads
    encoder_learning_rate: float
    warmup_ratio: float
    freeze_audio_epochs: int  # epochs at the start in which the audio tower does not learn
    spec_augment: bool | None  # SpecAugment-style masking in training; None: as the audio tower's config says
    use_weighted_layer_sum: bool  # the classifier reads a learnt mix of every audio layer, not only the last

    def flags(self) -> str:
        """The values as train.py flags, e.g. `--num_epochs 20 --learning_rate 0.0005 ...`."""
        return " ".join(
            f"--config_overrides use_weighted_layer_sum={str(value).lower()}"
            if name == "use_weighted_layer_sum"
            else f"--{name} {str(value).lower() if isinstance(value, bool) else value}"
            for name, value in asdict(self).items()
            if value is not None
        )


# The paper's setting (wav2vec2-base on IEMOCAP, Sun, He & Han 2023), kept for towers nobody has measured here.
GENERIC_DEFAULTS = TrainingDefaults(
    num_epochs=20,
    early_stopping_patience=5,
    learning_rate=5e-4,
    encoder_learning_rate=2e-5,
    warmup_ratio=0.1,
    freeze_audio_epochs=0,
    spec_augment=None,  # wav2vec2-style checkpoints mostly ship with it on (mask_time_prob 0.05), Whisper's off
    use_weighted_layer_sum=False,
)

# By audio tower model type. Whisper: bench.emodb with Whisper tiny.en on EmoDB's five speaker folds (bench/README.md,
# section 8): the encoder at 5e-5 and 16 epochs with patience 6 scored UA 82.6 against the probe's 81.0, where the
# paper's setting loses to the probe on RAVDESS. bench.defaults searches further (on validation speakers).
MEASURED_DEFAULTS = {
    "whisper": replace(
        GENERIC_DEFAULTS, num_epochs=16, early_stopping_patience=6, encoder_learning_rate=5e-5, spec_augment=False
    ),
}


def resolve_training_defaults(args, overrides: dict, audio_model_type: str) -> dict:
    """Fills every setting of `args` (train.py's Arguments) left at None, and `use_weighted_layer_sum` in the config
    `overrides` when they do not set it, from the tower family's row; returns what was filled, by name.

    A family without a measured row gets `GENERIC_DEFAULTS`, with a warning that names the family and the values."""
    measured = MEASURED_DEFAULTS.get(audio_model_type)
    defaults = measured or GENERIC_DEFAULTS
    filled = {}
    for item in fields(TrainingDefaults):
        value = getattr(defaults, item.name)
        if item.name == "use_weighted_layer_sum":
            if item.name not in overrides:
                overrides[item.name] = filled[item.name] = value
        elif getattr(args, item.name) is None and value is not None:
            setattr(args, item.name, value)
            filled[item.name] = value
    if filled:
        listed = ", ".join(f"{name} {value}" for name, value in filled.items())
        if measured is None:
            logger.warning(
                "No training defaults have been measured for %s audio towers: using the generic ones (%s). Pass your "
                "own values to choose (train.py --help).",
                audio_model_type, listed,
            )  # fmt: skip
        else:
            logger.info("Training defaults measured for %s audio towers: %s", audio_model_type, listed)
    return filled
