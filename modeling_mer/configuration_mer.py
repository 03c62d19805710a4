"""Configuration of MER: a speech encoder and a text encoder joined by K layers of cross-modal attention."""

from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig

__all__ = [
    "MERConfig",
    "AUDIO_FAMILIES",
    "AUX_TASKS",
    "DEFAULT_ID2LABEL",
    "DIMENSIONS",
    "FUSION_DIRECTIONS",
    "POOLINGS",
]

# Who queries whom in the fusion. `text_to_audio`: text information flows into the audio stream (audio frames are
# the queries, words the keys and values); `audio_to_text` the reverse; `bidirectional` runs both in every layer.
FUSION_DIRECTIONS = ("text_to_audio", "audio_to_text", "bidirectional")
# How each fused stream becomes one vector for the classifier: the mean over its real positions (the paper's), or
# the mean and the standard deviation side by side (statistics pooling, as x-vector speaker and emotion heads do:
# how much a stream varies over time is itself a cue, e.g. of arousal).
POOLINGS = ("mean", "mean_std")
# The dimensions of emotion a model may predict beside (or instead of) its classes, each on [0, 1]: 0 the lowest
# point of the corpus's scale (calm, negative, submissive), 1 its highest (excited, positive, dominant).
DIMENSIONS = ("arousal", "valence", "dominance")
# The two auxiliary tasks: emotion prediction on mismatched audio/text pairs, and audio/text emotion
# consistency. Both act on the fusion and only in training.
AUX_TASKS = ("cross_pair", "consistency")
DEFAULT_ID2LABEL = {0: "neutral", 1: "happy", 2: "angry", 3: "sad"}
# The audio encoders MER can use, by family: what `audio_family` returns and the error message lists.
AUDIO_FAMILIES = {
    "wav2vec2": "wav2vec2-style models with a convolutional front end on the waveform (wav2vec2, HuBERT, WavLM, "
    "data2vec-audio)",
    "whisper": "Whisper encoders on log-mel features (any size; the decoder is not used)",
}
# Whisper's front end at 16 kHz, whatever the model size: log-mel frames of a 400-sample window every 160 samples,
# two per encoder frame (its second convolution has stride 2).
WHISPER_SAMPLING_RATE = 16000
WHISPER_WINDOW = 400
WHISPER_HOP_LENGTH = 160
WHISPER_MEL_FRAMES_PER_FRAME = 2


class MERConfig(PretrainedConfig):
    r"""
    Configuration of [`MERModel`]: an audio encoder (wav2vec 2.0 style or Whisper's) and a text encoder (BERT
    style), each projected to `fusion_hidden_size`, joined by `fusion_num_layers` cross-modal attention layers,
    pooled and classified. With no arguments it describes a base-size model (wav2vec2-base + bert-base, K=2, four
    emotions).

    Args:
        audio_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the audio encoder: a model `AutoModel` knows with a wav2vec2-style convolutional front end
            (wav2vec2, HuBERT, WavLM, data2vec-audio), or a Whisper config (its encoder is used, on log-mel
            features). Defaults to `Wav2Vec2Config()`.
        text_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the text encoder (BERT, RoBERTa, ...). Defaults to `BertConfig()`.
        fusion_hidden_size (`int`, *optional*, defaults to 256):
            Width of both streams inside the fusion.
        fusion_num_layers (`int`, *optional*, defaults to 2):
            K, the number of cross-modal attention layers.
        fusion_num_heads (`int`, *optional*, defaults to 4):
            Attention heads per fusion layer; must divide `fusion_hidden_size`.
        fusion_intermediate_size (`int`, *optional*):
            Width of the feed-forward block of each fusion layer. Defaults to `4 * fusion_hidden_size`.
        fusion_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on attention probabilities, residual branches and the classifier input.
        fusion_direction (`str`, *optional*, defaults to `"bidirectional"`):
            One of `FUSION_DIRECTIONS`.
        use_weighted_layer_sum (`bool`, *optional*, defaults to `False`):
            Feed the fusion a learned softmax-weighted sum of all audio encoder layers instead of the last one.
        pooling (`str`, *optional*, defaults to `"mean"`):
            One of `POOLINGS`: how each fused stream is pooled over its real frames or tokens for the classifier
            and the auxiliary heads (`"mean_std"` doubles their input width).
        freeze_feature_encoder (`bool`, *optional*, defaults to `True`):
            Keep the convolutional front end of the audio model frozen (wav2vec2's feature encoder, Whisper's two
            convolutions): common practice when fine-tuning on small corpora.
        freeze_audio_encoder (`bool` or `int`, *optional*, defaults to `False`):
            `True` freezes the whole audio encoder (a frozen-feature model: only projections, fusion and heads
            learn); an integer `n` freezes its front end and its lowest `n` transformer layers.
        use_cross_pair_task (`bool`, *optional*, defaults to `True`):
            Auxiliary task 1: fuse audio i with the text of another utterance j and predict both labels.
        use_consistency_task (`bool`, *optional*, defaults to `True`):
            Auxiliary task 2: predict whether the paired audio and text carry the same emotion.
        aux_loss_weights (`dict`, *optional*):
            Weights `{"cross_pair": w1, "consistency": w2}` in `loss = CE + w1 * aux1 + w2 * aux2`.
            Defaults to 0.5 for both.
        modality_dropout (`float`, *optional*, defaults to 0.2):
            In training, the share of utterances that lose one modality, the transcript (emptied) or the audio
            (silenced) with equal chance, so that a missing modality at inference is a case the model has seen.
            Applied by the training data pipeline, which reads it from here. 0.2 keeps the fused scores
            of the synthetic demo where they were without it (within seed-to-seed spread).
        dimensions (`list[str]`, *optional*):
            The dimensions of emotion to predict (a subset of `DIMENSIONS`, in the order the outputs hold them),
            each in [0, 1] by a regression head on the pooled fusion beside the classifier. `None` (the default):
            classes only. With no classes (`id2label={}` or `num_labels=0`) the model predicts the dimensions
            alone: a dimensions-only model, with no classifier and no auxiliary tasks (both need classes).
        dimension_loss_weight (`float`, *optional*, defaults to 1.0):
            `w` in `loss = CE + w * (1 - mean CCC over the dimensions) + aux`: the concordance correlation
            coefficient, which challenges score the dimensions by, computed on each batch.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the new (non-encoder) weights.
        id2label (`dict`, *optional*):
            Class names; defaults to `{0: "neutral", 1: "happy", 2: "angry", 3: "sad"}`. Empty (`{}`, or
            `num_labels=0`) for a dimensions-only model, which must name its `dimensions`.
        evaluation (`dict`, *optional*):
            What this model scored on data it was not trained on, as its training run recorded it: `evaluated_on`
            (which fold of which corpus) and, per condition (`test`: both modalities, `test_audio_only`,
            `test_text_only`), its `wa`, `ua` and `num_examples`, and for a model with `dimensions`, per dimension
            its `ccc`, `pearson_r`, `mae` and `num_examples`. `None` when never measured. Not a setting: nothing in
            the model reads it.
        training_utterance_seconds (`dict`, *optional*):
            The lengths of the utterances the model was trained on, as it saw them (after cropping): `p05`,
            `median` and `p95` in seconds. `mer timeline` cuts long speech into segments of such lengths. `None`
            when not recorded.

    Raises:
        ValueError: naming the field, for heads that do not divide the size, an unknown direction, K < 1, a fusion
            or modality dropout outside [0, 1), unknown or negative auxiliary weights, label maps that disagree, one
            class, no classes and no dimensions, an
            audio config of no supported family (`AUDIO_FAMILIES`), a text config that is not a text model, or
            records (`evaluation`, `training_utterance_seconds`) of the wrong shape.
    """

    model_type = "mer"
    # Declared so that `from_pretrained(dtype=...)` and `attn_implementation` reach both encoders.
    sub_configs = {"audio_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        audio_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        fusion_hidden_size: int = 256,
        fusion_num_layers: int = 2,
        fusion_num_heads: int = 4,
        fusion_intermediate_size: int | None = None,
        fusion_dropout: float = 0.1,
        fusion_direction: str = "bidirectional",
        use_weighted_layer_sum: bool = False,
        pooling: str = "mean",
        freeze_feature_encoder: bool = True,
        freeze_audio_encoder: bool | int = False,
        use_cross_pair_task: bool = True,
        use_consistency_task: bool = True,
        aux_loss_weights: dict[str, float] | None = None,
        modality_dropout: float = 0.2,
        dimensions: list[str] | None = None,
        dimension_loss_weight: float = 1.0,
        initializer_range: float = 0.02,
        evaluation: dict | None = None,
        training_utterance_seconds: dict[str, float] | None = None,
        **kwargs,
    ):
        self.audio_config = _sub_config(audio_config, "wav2vec2")
        self.text_config = _sub_config(text_config, "bert")
        self.fusion_hidden_size = fusion_hidden_size
        self.fusion_num_layers = fusion_num_layers
        self.fusion_num_heads = fusion_num_heads
        self.fusion_intermediate_size = fusion_intermediate_size or 4 * fusion_hidden_size
        self.fusion_dropout = fusion_dropout
        self.fusion_direction = fusion_direction
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.pooling = pooling
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_audio_encoder = freeze_audio_encoder
        self.use_cross_pair_task = use_cross_pair_task
        self.use_consistency_task = use_consistency_task
        self.aux_loss_weights = (
            dict(aux_loss_weights) if aux_loss_weights is not None else dict.fromkeys(AUX_TASKS, 0.5)
        )
        self.modality_dropout = modality_dropout
        self.dimensions = list(dimensions) if dimensions else None
        self.dimension_loss_weight = dimension_loss_weight
        self.initializer_range = initializer_range
        self.evaluation = evaluation
        self.training_utterance_seconds = training_utterance_seconds
        num_labels = kwargs.pop("num_labels", None)
        if kwargs.get("id2label") is None:
            default = DEFAULT_ID2LABEL if num_labels is None else {i: f"LABEL_{i}" for i in range(num_labels)}
            kwargs["id2label"] = dict(default)
        super().__init__(**kwargs)
        self._check_fusion()
        self._check_labels(num_labels)
        self._check_encoders()
        self._check_records()

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> MERConfig:
        """As transformers' `from_dict`, except that classes given to `from_pretrained` (`id2label=` or a different
        `num_labels=`) replace the saved label maps whole instead of contradicting them."""
        config_dict = dict(config_dict)
        if kwargs.get("id2label") is not None:
            config_dict["id2label"] = kwargs.pop("id2label")
            config_dict["label2id"] = kwargs.pop("label2id", None)
        elif kwargs.get("num_labels") is not None and kwargs["num_labels"] != len(config_dict.get("id2label") or {}):
            config_dict.pop("id2label", None)
            config_dict.pop("label2id", None)
        return super().from_dict(config_dict, **kwargs)

    def _check_fusion(self) -> None:
        if not isinstance(self.fusion_num_layers, int) or self.fusion_num_layers < 1:
            raise ValueError(f"fusion_num_layers must be an integer >= 1, got {self.fusion_num_layers!r}.")
        if self.fusion_hidden_size < 1 or self.fusion_num_heads < 1:
            raise ValueError(
                f"fusion_hidden_size and fusion_num_heads must be positive, got {self.fusion_hidden_size} and "
                f"{self.fusion_num_heads}."
            )
        if self.fusion_hidden_size % self.fusion_num_heads:
            raise ValueError(
                f"fusion_num_heads ({self.fusion_num_heads}) must divide fusion_hidden_size "
                f"({self.fusion_hidden_size})."
            )
        if self.fusion_direction not in FUSION_DIRECTIONS:
            raise ValueError(f"fusion_direction must be one of {FUSION_DIRECTIONS}, got {self.fusion_direction!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        for name in self.dimensions or []:
            if name not in DIMENSIONS:
                raise ValueError(f"dimensions: {name!r} is not one of {DIMENSIONS}.")
        if self.dimensions and len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"dimensions names one twice: {self.dimensions}.")
        weight = self.dimension_loss_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0 or math.isnan(weight):
            raise ValueError(f"dimension_loss_weight must be a number >= 0, got {weight!r}.")
        for name in ("fusion_dropout", "modality_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        unknown = set(self.aux_loss_weights) - set(AUX_TASKS)
        if unknown:
            raise ValueError(f"aux_loss_weights has unknown tasks {sorted(unknown)}; the tasks are {AUX_TASKS}.")
        for task in AUX_TASKS:
            weight = self.aux_loss_weights.setdefault(task, 0.5)
            if not isinstance(weight, (int, float)) or weight < 0 or math.isnan(weight):
                raise ValueError(f"aux_loss_weights[{task!r}] must be a number >= 0, got {weight!r}.")

    def _check_labels(self, num_labels: int | None) -> None:
        if num_labels is not None and len(self.id2label) != num_labels:
            raise ValueError(
                f"num_labels={num_labels} disagrees with id2label, which has {len(self.id2label)} classes."
            )
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError(f"id2label keys must be 0..{len(self.id2label) - 1}, got {sorted(self.id2label)}.")
        if not self.id2label:
            if not self.dimensions:
                raise ValueError(
                    "A model with no classes (id2label={} or num_labels=0) must predict dimensions: name them in "
                    f"dimensions (some of {DIMENSIONS})."
                )
            # The auxiliary tasks predict classes: a dimensions-only model has nothing for them to learn.
            self.use_cross_pair_task = self.use_consistency_task = False
        elif len(self.id2label) < 2:
            raise ValueError(f"id2label must name at least 2 classes (or none, with dimensions), got {self.id2label}.")
        inverse = {name: index for index, name in self.id2label.items()}
        if len(inverse) != len(self.id2label):
            raise ValueError(f"id2label has repeated class names: {self.id2label}.")
        if self.label2id is None:
            self.label2id = inverse
        elif {str(k): int(v) for k, v in self.label2id.items()} != inverse:
            raise ValueError(f"label2id {self.label2id} disagrees with id2label {self.id2label}.")
        else:
            self.label2id = inverse

    def _check_encoders(self) -> None:
        family = self.audio_family  # raises for an unsupported audio encoder
        if family == "wav2vec2" and len(self.audio_config.conv_kernel) != len(self.audio_config.conv_stride):
            raise ValueError("audio_config.conv_kernel and audio_config.conv_stride must have the same length.")
        frozen = self.freeze_audio_encoder
        if not isinstance(frozen, (bool, int)) or (not isinstance(frozen, bool) and frozen < 0):
            raise ValueError(f"freeze_audio_encoder must be True, False or a number of layers >= 0, got {frozen!r}.")
        text = self.text_config
        speech = hasattr(text, "num_mel_bins") or hasattr(text, "conv_kernel")
        if speech or getattr(text, "vocab_size", None) is None or getattr(text, "is_encoder_decoder", False):
            raise ValueError(
                f"text_config ({text.model_type}) is not a text encoder: the text tower must be a BERT-style model "
                "(BERT, RoBERTa, DistilBERT, ...). Speech models go in audio_config."
            )

    def _check_records(self) -> None:
        if self.evaluation is not None and not isinstance(self.evaluation, dict):
            raise ValueError(f"evaluation must be a dict of scores or None, got {self.evaluation!r}.")
        lengths = self.training_utterance_seconds
        if lengths is None:
            return
        keys = ("p05", "median", "p95")
        values = [lengths.get(key) for key in keys] if isinstance(lengths, dict) else []
        if (
            len(values) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
            or not values[0] <= values[1] <= values[2]
        ):
            raise ValueError(
                "training_utterance_seconds must be {'p05', 'median', 'p95'}: positive seconds in that order, got "
                f"{lengths!r}."
            )

    @property
    def predicts_classes(self) -> bool:
        """Whether the model has classes (`id2label`); False for a dimensions-only model."""
        return bool(self.id2label)

    @property
    def audio_family(self) -> str:
        """`"whisper"` or `"wav2vec2"` (see `AUDIO_FAMILIES`): how the audio tower reads audio and frames it."""
        if self.audio_config.model_type == "whisper":
            return "whisper"
        if all(hasattr(self.audio_config, field) for field in ("conv_kernel", "conv_stride", "hidden_size")):
            return "wav2vec2"
        supported = "; ".join(AUDIO_FAMILIES.values())
        raise ValueError(
            f"audio_config ({self.audio_config.model_type}) is not a supported audio encoder. Supported: {supported}."
        )

    @property
    def audio_receptive_field(self) -> int:
        """Samples the audio front end needs to produce one frame (400 for wav2vec2-base at 16 kHz, and for Whisper:
        one log-mel analysis window)."""
        if self.audio_family == "whisper":
            return WHISPER_WINDOW
        field, jump = 1, 1
        for kernel, stride in zip(self.audio_config.conv_kernel, self.audio_config.conv_stride, strict=True):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    @property
    def audio_frame_stride(self) -> int:
        """Samples between two audio frames (320 for wav2vec2-base and for Whisper: 50 frames per second at 16 kHz)."""
        if self.audio_family == "whisper":
            return WHISPER_HOP_LENGTH * WHISPER_MEL_FRAMES_PER_FRAME
        return math.prod(self.audio_config.conv_stride)

    @property
    def audio_max_samples(self) -> int | None:
        """The longest audio the encoder takes in one pass (Whisper: its 30 s window), or None when unbounded."""
        if self.audio_family == "whisper":
            return self.audio_config.max_source_positions * self.audio_frame_stride
        return None

    @property
    def audio_max_seconds(self) -> float | None:
        """`audio_max_samples` in seconds (Whisper: 30.0), or None when unbounded."""
        samples = self.audio_max_samples
        return None if samples is None else samples / WHISPER_SAMPLING_RATE

    @property
    def audio_encoder_takes_mask(self) -> bool:
        """Whether the audio encoder should be given the mask. Encoders with a group-norm front end (wav2vec2-base,
        HuBERT-base) were pre-trained on zero-padded batches without one; MER still excludes their padding frames
        from attention and pooling. MER runs Whisper's encoder with the mask of its log-mel frames."""
        if self.audio_family == "whisper":
            return True
        return getattr(self.audio_config, "feat_extract_norm", "layer") == "layer"


def _sub_config(value: dict | PretrainedConfig | None, default_model_type: str) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    if value is None:
        return AutoConfig.for_model(default_model_type)
    if isinstance(value, dict):
        value = dict(value)
        return AutoConfig.for_model(value.pop("model_type", default_model_type), **value)
    raise ValueError(f"Sub-configs must be a dict or a PretrainedConfig, got {type(value).__name__}.")
