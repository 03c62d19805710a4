"""train.py's arguments, and the checks that need nothing loaded: wrong flags fail before any data or model is read."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "BASELINES",
    "TRANSCRIPT_SOURCES",
    "VALIDATION_STRATEGIES",
    "Arguments",
    "load_model_configs",
    "parse_config_overrides",
    "run_defining",
]

# How the validation split is taken from the training folds (see mer.training.protocol.validation_split).
VALIDATION_STRATEGIES = ("speaker", "utterance")
# Which transcripts a run trains and tests on: the corpus's own, speech recognition's, or gold for training and both
# for testing.
TRANSCRIPT_SOURCES = ("gold", "asr", "both")
# Whether a run fits the frozen-feature probe (mer.training.baseline) beside MER, instead of MER, or not at all.
BASELINES = ("probe", "probe-only", "none")
# Settings whose default depends on the audio tower (mer.training.training_defaults).
_PER_TOWER = "Default: measured per audio tower family (mer.training.training_defaults; README, Why these defaults)."
# Arguments that do not change what a run computes: a rerun may differ in them and still resume.
_RUN_NEUTRAL = {"folds", "resume_from_checkpoint", "overwrite_output_dir", "num_workers", "report_to"}
_RUN_NEUTRAL |= {"push_to_hub", "hub_model_id", "hub_private", "push_fold", "final_fit", "export_folds"}
_RUN_NEUTRAL |= {"baseline"}  # the probe is fitted apart from MER, and added to finished folds by a rerun
_RUN_NEUTRAL |= {"output_dir"}  # a run moved elsewhere resumes there
_RUN_NEUTRAL |= {"allow_incomplete"}  # permits a run on the data it reads; the data define the run


@dataclass
class Arguments:
    # Data
    data_dir: str | None = field(
        default=None,
        metadata={"help": "An IEMOCAP_full_release directory (or a corpus in its layout, such as the synthetic one)."},
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Instead of --data_dir: a `datasets` dataset with audio, text and label columns: a Parquet file, "
            "a folder of Parquet files, a save_to_disk folder or a Hub id. Folds come from --fold_column, else "
            "from its splits."
        },
    )
    corpus: list[str] | None = field(
        default=None,
        metadata={
            "help": "Instead of --data_dir / --dataset: public corpora by name, read by their builders, e.g. "
            "--corpus ravdess=/data/RAVDESS --corpus emodb=/data/emodb (any number; iemocap, ravdess, cremad, tess, "
            "emodb, meld, msp_podcast). Their labels are mapped to the shared classes (--classes).",
            "nargs": "+",
            "action": "extend",
        },
    )
    classes: str = field(
        default="neutral,happy,angry,sad",
        metadata={
            "help": "--corpus: the shared classes trained on, in order (dataset_scripts.labels: neutral, happy, "
            "angry, sad, fearful, disgusted, surprised, calm, bored, frustrated, contemptuous; or all). Utterances "
            "of other labels are dropped and counted."
        },
    )
    protocol: str = field(
        default="within-corpus",
        metadata={
            "help": "--corpus: within-corpus (each corpus's standard folds or official splits, trained on the union "
            "of the training folds, tested per corpus and pooled) or leave-one-corpus-out (train on all corpora but "
            "one, test on the one left out, for each)."
        },
    )
    skip_invalid: bool = field(
        default=False,
        metadata={"help": "--corpus / --data_dir: leave out (and log) utterances whose audio cannot be read."},
    )
    allow_incomplete: bool = field(
        default=False,
        metadata={
            "help": "--corpus: train on a copy that lacks some of the release's documented files (the run stops "
            "otherwise, with the counts); its scores are then not those of the whole corpus."
        },
    )
    dimensions: str | None = field(
        default=None,
        metadata={
            "help": "Also predict these dimensions of emotion, e.g. arousal,valence (of arousal, valence, "
            "dominance), from the corpus's ratings mapped to [0, 1] (dataset_scripts/dimensions.py: IEMOCAP 1-5, "
            "MSP-Podcast 1-7), trained with a CCC loss beside the classes; the epoch is then chosen by the mean of "
            "validation UA and CCC."
        },
    )
    dimensions_only: bool = field(
        default=False,
        metadata={
            "help": "With --dimensions: a dimensions-only model (no classifier, no auxiliary tasks), trained with the "
            "CCC loss alone; the epoch is chosen by the mean validation CCC and the run reports CCC, r and MAE only. "
            "The corpus's class labels still choose its utterances (e.g. IEMOCAP's --dataset_config) but are not "
            "learnt; a --dataset without a label column needs none. The probe reads classes: --baseline probe (the "
            "default) is then not fitted."
        },
    )
    dimension_scale: str | None = field(
        default=None,
        metadata={
            "help": "--dataset with --dimensions: the scale of its ratings as LOW,HIGH (e.g. 1,7), mapped to [0, 1]. "
            "Default 0,1 (ratings already on the model's range). The corpora by name and --data_dir know theirs."
        },
    )
    dataset_config: str = field(default="4class", metadata={"help": "IEMOCAP label set: 4class, 6class or all."})
    improvised_only: bool = field(default=False, metadata={"help": "IEMOCAP: keep improvised dialogs only."})
    fold_column: str = field(default="session", metadata={"help": "--dataset: the column whose values are the folds."})
    audio_column: str = field(default="audio", metadata={"help": "Column holding the audio."})
    text_column: str = field(default="text", metadata={"help": "Column holding the transcript."})
    label_column: str = field(default="label", metadata={"help": "Column holding the emotion (ClassLabel or str)."})
    speaker_column: str = field(
        default="speaker",
        metadata={"help": "Column naming each utterance's speaker: validation speakers and the speaker checks."},
    )
    # Protocol
    folds: list[str] | None = field(
        default=None,
        metadata={"help": "Run only these folds, by name or 1-based number, e.g. --folds 1 3 or --folds session2."},
    )
    validation_strategy: str = field(
        default="speaker",
        metadata={
            "help": "speaker: validate on whole training speakers, held out from training (no speaker in two of "
            "train / validation / test); utterance: on a share of every training speaker's utterances (the "
            "validation speakers are also training speakers), for comparison with protocols that do so."
        },
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Least share of the training folds' utterances held out for validation: whole speakers until "
            "they reach it (speaker), or this share of each speaker's utterances (utterance)."
        },
    )
    export_folds: str | None = field(
        default=None,
        metadata={
            "help": "Write the folds as EmoBox-style JSONL into this directory (fold_<n>/<corpus>_train_fold_<n>"
            ".jsonl and ..._test_fold_<n>.jsonl), then stop without training: other toolkits run on identical splits."
        },
    )
    # Transcripts
    transcripts: str = field(
        default="gold",
        metadata={
            "help": "gold: the corpus's transcripts; asr: speech recognition's (--asr_model) for every utterance, in "
            "training and testing; both: train on gold, test on gold and on speech recognition's, as a deployed "
            "model meets them. Speech recognition runs once per corpus and model, cached beside the datasets cache."
        },
    )
    asr_model: str | None = field(
        default=None,
        metadata={
            "help": "Speech recognition for --transcripts asr/both: a Whisper Hub id, a faster-whisper size name or a "
            "local directory (default: MER_ASR_MODEL, else openai/whisper-small.en)."
        },
    )
    asr_backend: str = field(
        default="auto", metadata={"help": "auto (faster-whisper where installed), faster-whisper or transformers."}
    )
    # Model
    audio_model: str = field(
        default="facebook/wav2vec2-base",
        metadata={
            "help": "Audio encoder: Hub id or directory of a wav2vec2-style model (wav2vec2, HuBERT, WavLM, "
            "data2vec-audio) or of a Whisper model (its encoder is used)."
        },
    )
    text_model: str = field(default="bert-base-uncased", metadata={"help": "Text encoder: Hub id or directory."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "MERConfig fields, e.g. 'fusion_num_layers=4,modality_dropout=0.3' (values read as JSON when "
            "they parse)."
        },
    )
    audio_layerdrop: float = field(
        default=0.0,
        metadata={
            "help": "LayerDrop of the audio encoder while fine-tuning (0, as in transformers' speech fine-tuning "
            "examples). Above 0, layers are skipped at random, so DDP must search for unused parameters every step."
        },
    )
    # Training
    output_dir: str = field(default="runs/mer", metadata={"help": "Where folds, checkpoints and results go."})
    num_epochs: int | None = field(default=None, metadata={"help": "Maximum epochs per fold. " + _PER_TOWER})
    batch_size: int = field(default=8, metadata={"help": "Utterances per device and step."})
    eval_batch_size: int = field(default=16, metadata={"help": "Utterances per device in evaluation."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps accumulated per update."})
    encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of both encoders. " + _PER_TOWER}
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of projections, fusion and heads. " + _PER_TOWER}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Share of the updates spent warming up, then linear decay. " + _PER_TOWER}
    )
    freeze_audio_epochs: int | None = field(
        default=None,
        metadata={
            "help": "The audio tower learns nothing in the first N epochs (the new fusion and heads settle first); "
            "0 lets it learn from the start. " + _PER_TOWER
        },
    )
    spec_augment: bool | None = field(
        default=None,
        metadata={
            "help": "SpecAugment-style masking in training: spans of time and of frequency (Whisper: log-mel frames "
            "and mel bins; wav2vec2-style towers: feature frames and channels), their shares set by --mask_time_prob "
            "and --mask_feature_prob. " + _PER_TOWER
        },
    )
    group_by_length: bool = field(
        default=True,
        metadata={
            "help": "Batch utterances of similar length (less padding). Turn off when length predicts the label, as "
            "in the synthetic corpus (duration carries arousal): batches would be nearly single-class."
        },
    )
    max_audio_seconds: float = field(
        default=15.0,
        metadata={
            "help": "Training crops longer audio to a random window of this length; evaluation sees whole utterances."
        },
    )
    mask_time_prob: float | None = field(
        default=None,
        metadata={"help": "--spec_augment: the share of time masked (default: the audio tower's config, 0.05)."},
    )
    mask_feature_prob: float | None = field(
        default=None,
        metadata={
            "help": "--spec_augment: the share of frequency bins (channels) masked (default: the audio tower's "
            "config)."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop a fold after this many epochs without a better validation UA. " + _PER_TOWER},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers per process."})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, splits, batch order and dropout."})
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Several seeds, each running every fold (instead of --seed): results give mean ± std over folds "
            "and over seeds separately. Each seed's folds go to <output_dir>/seed<N>/."
        },
    )
    baseline: str = field(
        default="probe",
        metadata={
            "help": "probe: also fit a logistic regression on the frozen towers' pooled features (mean and std of "
            "their last layer; speech, text and both) on the same folds, its C chosen on the same validation "
            "speakers, and report it beside MER: did fine-tuning beat a linear read-out of the same encoders? "
            "probe-only: the probe alone, no fine-tuning; none: MER alone."
        },
    )
    ablations: bool = field(
        default=True,
        metadata={
            "help": "Also test each fold with the transcript emptied (audio only) and the audio silenced (text only)."
        },
    )
    final_fit: bool = field(
        default=False,
        metadata={"help": "After the folds, train one model on all of them (validation split from all of them)."},
    )
    report_to: str | None = field(
        default=None, metadata={"help": "Experiment tracker for accelerate, e.g. tensorboard."}
    )
    resume_from_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "Continue the run in --output_dir (rerunning the same command does too); fails if there is none."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete what --output_dir holds and start again."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the chosen model with its card, processor and code."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name of the model repository."})
    hub_private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    push_fold: str | None = field(
        default=None, metadata={"help": "The fold whose model is pushed (e.g. session1), unless --final_fit."}
    )

    def check(self) -> None:
        """Raises ValueError for inconsistent arguments, before anything is loaded."""
        sources = [self.data_dir is not None, self.dataset is not None, bool(self.corpus)]
        if sum(sources) != 1:
            raise ValueError(
                "Give exactly one of --data_dir (IEMOCAP layout), --dataset (a datasets dataset) and --corpus "
                "name=directory (public corpora by name)."
            )
        if self.corpus:
            from dataset_scripts.labels import parse_classes
            from mer.training.corpora import PROTOCOLS, parse_corpus_arguments

            if self.protocol not in PROTOCOLS:
                raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {self.protocol!r}.")
            parse_corpus_arguments(self.corpus)
            parse_classes(self.classes)
            if self.protocol == "leave-one-corpus-out" and len(self.corpus) < 2:
                raise ValueError("--protocol leave-one-corpus-out needs at least two corpora (--corpus, twice).")
        for name in ("num_epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("mask_time_prob", "mask_feature_prob"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.freeze_audio_epochs is not None and self.freeze_audio_epochs < 0:
            raise ValueError(f"--freeze_audio_epochs must be >= 0, got {self.freeze_audio_epochs}.")
        if None not in (self.freeze_audio_epochs, self.num_epochs) and self.freeze_audio_epochs >= self.num_epochs:
            raise ValueError(
                f"--freeze_audio_epochs {self.freeze_audio_epochs} >= --num_epochs {self.num_epochs}: the audio tower "
                "would never learn. For a frozen tower throughout, pass --config_overrides freeze_audio_encoder=true."
            )
        if self.baseline not in BASELINES:
            raise ValueError(f"--baseline must be one of {BASELINES}, got {self.baseline!r}.")
        if self.baseline == "probe-only" and (self.push_to_hub or self.final_fit):
            raise ValueError("--baseline probe-only trains no model: it cannot --push_to_hub or --final_fit.")
        if self.validation_strategy not in VALIDATION_STRATEGIES:
            raise ValueError(
                f"--validation_strategy must be one of {VALIDATION_STRATEGIES}, got {self.validation_strategy!r}."
            )
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must be in (0, 1), got {self.validation_fraction}.")
        if self.max_audio_seconds <= 0:
            raise ValueError(f"--max_audio_seconds must be positive, got {self.max_audio_seconds}.")
        if not 0 <= self.audio_layerdrop < 1:
            raise ValueError(f"--audio_layerdrop must be in [0, 1), got {self.audio_layerdrop}.")
        self._check_dimensions()
        _check_unique("--seeds", self.seeds or [])
        _check_unique("--folds", self.folds or [])
        self._check_transcripts()
        if self.push_to_hub:
            if not self.hub_model_id:
                raise ValueError("--push_to_hub needs --hub_model_id user/name.")
            if not self.final_fit and not self.push_fold:
                raise ValueError("--push_to_hub needs the model to push: --push_fold <fold> or --final_fit.")

    def _check_dimensions(self) -> None:
        from dataset_scripts.dimensions import parse_scale
        from mer.training.dimensions import parse_dimensions

        parse_dimensions(self.dimensions)
        if self.dimensions_only:
            if not self.dimensions:
                raise ValueError("--dimensions_only without --dimensions: name the dimensions to train.")
            if self.baseline == "probe-only":
                raise ValueError(
                    "--dimensions_only with --baseline probe-only: the probe predicts classes, and a dimensions-only "
                    "run has none to compare."
                )
            self.baseline = "none"  # the probe reads classes (see --dimensions_only)
        if self.dimension_scale is not None:
            if self.dataset is None:
                raise ValueError(
                    "--dimension_scale states the scale of a --dataset's ratings; --data_dir and --corpus know their "
                    "corpus's scale (dataset_scripts/dimensions.py)."
                )
            if not self.dimensions:
                raise ValueError("--dimension_scale without --dimensions: name the dimensions to train.")
            parse_scale(self.dimension_scale)

    @property
    def dimension_list(self) -> list[str]:
        """The dimensions of emotion the run trains and scores (`--dimensions`), in the given order."""
        from mer.training.dimensions import parse_dimensions

        return parse_dimensions(self.dimensions)

    def _check_transcripts(self) -> None:
        from modeling_mer.asr_mer import ASR_BACKENDS, default_asr_model

        if self.transcripts not in TRANSCRIPT_SOURCES:
            raise ValueError(f"--transcripts must be one of {TRANSCRIPT_SOURCES}, got {self.transcripts!r}.")
        if self.asr_backend not in ASR_BACKENDS:
            raise ValueError(f"--asr_backend must be one of {ASR_BACKENDS}, got {self.asr_backend!r}.")
        if self.transcripts == "gold":
            return
        # Resolved now, so that the run records (and a resumed run must match) the model that transcribed.
        self.asr_model = self.asr_model or default_asr_model()
        if self.asr_model.startswith(("/", ".", "~")) and not Path(self.asr_model).expanduser().is_dir():
            raise ValueError(
                f"--transcripts {self.transcripts} needs a speech-recognition model, but --asr_model "
                f"{self.asr_model} is not a directory."
            )

    @property
    def seed_list(self) -> list[int]:
        """The seeds the run trains each fold with: --seeds, else --seed."""
        return list(self.seeds) if self.seeds else [self.seed]


def _check_unique(flag: str, values: list) -> None:
    repeated = sorted(value for value, count in Counter(map(str, values)).items() if count > 1)
    if repeated:
        raise ValueError(f"{flag} {' '.join(map(str, values))}: {', '.join(repeated)} given twice.")


def run_defining(args: Arguments) -> dict:
    """The arguments that define what a run computes: a rerun must match them to resume."""
    return {k: v for k, v in asdict(args).items() if k not in _RUN_NEUTRAL}


def parse_config_overrides(text: str | None) -> dict:
    """`'a=1,b=text,c={"x": 1, "y": 2}'` -> `{"a": 1, "b": "text", "c": {"x": 1, "y": 2}}`; every key must be a
    MERConfig field and the values must pass its validation."""
    from modeling_mer import MERConfig

    overrides = {}
    # Split at commas that start a new `key=`, so JSON values may hold commas themselves.
    for item in filter(None, (part.strip() for part in re.split(r",(?=\s*\w+\s*=)", text or ""))):
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides: {item!r} is not key=value.")
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
        overrides[key.strip()] = value
    known = set(MERConfig().to_dict()) - {"audio_config", "text_config"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"--config_overrides: unknown MERConfig fields {unknown}.")
    MERConfig(**overrides)  # validates the values
    return overrides


def load_model_configs(audio_model: str, text_model: str) -> str:
    """The audio tower's model type (e.g. `whisper`, `wav2vec2`). Fails early, naming the model, when an encoder
    cannot be found or read, or is not of a kind MER can use (an audio family of `AUDIO_FAMILIES`, a text encoder)."""
    from transformers import AutoConfig

    from modeling_mer import MERConfig

    configs = {}
    for role, name in (("audio", audio_model), ("text", text_model)):
        try:
            configs[role] = AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot load the {role} model {name!r}: {error}") from error
    try:
        MERConfig(audio_config=configs["audio"], text_config=configs["text"])
    except ValueError as error:
        raise ValueError(f"--audio_model {audio_model!r} / --text_model {text_model!r}: {error}") from error
    return configs["audio"].model_type
