"""MER: wav2vec 2.0 + BERT joined by K layers of cross-modal multi-head attention, trained with two auxiliary tasks
(Sun, He & Han, "Using Auxiliary Tasks in Multimodal Fusion of Wav2vec 2.0 and BERT for Multimodal Emotion
Recognition", ICASSP 2023)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, is_torchdynamo_compiling, logging

from .configuration_mer import WHISPER_HOP_LENGTH, WHISPER_MEL_FRAMES_PER_FRAME, MERConfig

__all__ = [
    "MERFeaturesOutput",
    "MERFusionOutput",
    "MERModel",
    "MEROutput",
    "MERPreTrainedModel",
    "MERWhisperEncoder",
    "MismatchedClassesError",
    "audio_frame_mask",
    "concordance",
    "masked_mean",
]

logger = logging.get_logger(__name__)


@dataclass
class MERFeaturesOutput(ModelOutput):
    """
    One modality's encoding projected to the fusion size ([`MERModel.project_audio_features`],
    [`MERModel.project_text_features`]), or the fused pair ([`MERModel.get_fused_features`]).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, length, fusion_hidden_size)`):
            Audio frames or tokens (for the fused pair: the fused audio frames followed by the fused tokens).
        attention_mask (`torch.BoolTensor` of shape `(batch_size, length)`):
            Which positions are real rather than padding (audio frames derived from the sample mask).
        pooler_output (`torch.FloatTensor` of shape `(batch_size, fusion_hidden_size)`):
            Masked mean over the real positions (for the fused pair `(batch_size, 2 * fusion_hidden_size)`, or
            `4 * fusion_hidden_size` with `pooling="mean_std"`: the pooled audio and text streams, concatenated,
            which is what the classifier reads).
        hidden_states (`tuple[torch.FloatTensor]`, returned with `output_hidden_states=True`):
            The encoder's own hidden states (embeddings and every layer), before the projection; for the fused pair,
            the joint `[audio ; text]` states entering the fusion and after each fusion layer.
        audio_attentions, text_attentions (`tuple[torch.FloatTensor]`, fused pair only, returned with
            `output_attentions=True`): as in [`MEROutput`].
    """

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.BoolTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MERFusionOutput(ModelOutput):
    """
    Output of [`MERFusion`].

    Args:
        audio (`torch.FloatTensor` of shape `(batch_size, num_frames, fusion_hidden_size)`):
            The fused audio stream (the projected frames where audio frames are not queries).
        text (`torch.FloatTensor` of shape `(batch_size, num_tokens, fusion_hidden_size)`):
            The fused text stream (the projected tokens where words are not queries).
        audio_attentions, text_attentions (`tuple[torch.FloatTensor]`, returned with `output_attentions=True`):
            As in [`MEROutput`].
        hidden_states (`tuple[torch.FloatTensor]`, returned with `output_hidden_states=True`):
            The joint `[audio ; text]` states entering the fusion and after each layer.
    """

    audio: torch.FloatTensor | None = None
    text: torch.FloatTensor | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MEROutput(ModelOutput):
    """
    Output of [`MERModel`]. With `return_dict=False` the fields that are set come as a tuple, in this order.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` or `dimension_labels` are given):
            `classification_loss + w * dimension_loss + w1 * aux_losses["cross_pair"] + w2 *
            aux_losses["consistency"]` (the terms that are there; `w` is `config.dimension_loss_weight`).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Emotion scores (before softmax); None for a dimensions-only model (no classes).
        dimensions (`torch.FloatTensor` of shape `(batch_size, len(config.dimensions))`, for models with
            `config.dimensions`): each dimension of emotion (arousal, valence, dominance) in [0, 1], in the order of
            `config.dimensions`.
        classification_loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            Cross-entropy of `logits` against `labels`.
        dimension_loss (`torch.FloatTensor` of shape `()`, returned when `dimension_labels` are given):
            `1 - ` the mean over dimensions of the concordance correlation coefficient of `dimensions` with
            `dimension_labels` on the batch (values that are NaN, missing, are left out).
        aux_losses (`dict[str, torch.FloatTensor]`, returned when training with `labels`):
            The unweighted auxiliary losses that are switched on, keyed by task (`"cross_pair"`, `"consistency"`).
        pooled_output (`torch.FloatTensor` of shape `(batch_size, 2 * fusion_hidden_size)`):
            Masked means of the fused audio and text streams, concatenated: the classifier's input (with
            `pooling="mean_std"`, `(batch_size, 4 * fusion_hidden_size)`: each stream's mean and standard deviation).
        audio_frame_mask (`torch.LongTensor` of shape `(batch_size, num_frames)`):
            1 for the audio frames that are speech, 0 for padding (integers, as transformers' attention masks are).
        hidden_states (`tuple[torch.FloatTensor]`, returned with `output_hidden_states=True`):
            `fusion_num_layers + 1` tensors of shape `(batch_size, num_frames + num_tokens, fusion_hidden_size)`:
            the audio frames followed by the tokens, as they enter the fusion and after each fusion layer.
        attentions (`tuple[torch.FloatTensor]`, one per fusion layer, returned with `output_attentions=True`):
            `(batch_size, num_heads, num_frames + num_tokens, num_frames + num_tokens)`, in the layout of
            `hidden_states`: row `i` is position `i` as a query. The fusion is cross-modal, so frames attend to
            tokens (rows `:num_frames`, columns `num_frames:`) and tokens to frames (rows `num_frames:`, columns
            `:num_frames`); every other weight is 0, as are the rows of a modality that is not a query in
            `fusion_direction`. The same weights, per direction, are `audio_attentions` and `text_attentions`.
        audio_encoder_hidden_states (`tuple[torch.FloatTensor]`, returned with `output_hidden_states=True`):
            The audio encoder's hidden states (`(batch_size, num_frames, audio hidden size)` each).
        text_encoder_hidden_states (`tuple[torch.FloatTensor]`, returned with `output_hidden_states=True`):
            The text encoder's hidden states (`(batch_size, num_tokens, text hidden size)` each).
        audio_attentions (`tuple[torch.FloatTensor]`, one per fusion layer, returned with `output_attentions=True`
            when audio frames are queries): `(batch_size, num_heads, num_frames, num_tokens)`.
        text_attentions (`tuple[torch.FloatTensor]`, one per fusion layer, returned with `output_attentions=True`
            when words are queries): `(batch_size, num_heads, num_tokens, num_frames)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    dimensions: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    dimension_loss: torch.FloatTensor | None = None
    aux_losses: dict[str, torch.FloatTensor] | None = None
    pooled_output: torch.FloatTensor | None = None
    audio_frame_mask: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None


def audio_frame_mask(sample_mask: torch.Tensor, audio_config: PretrainedConfig, num_frames: int) -> torch.BoolTensor:
    """Turns a `(batch, length)` mask of the audio encoder's input, real (1) and padded (0), padded on the right, into
    a `(batch, num_frames)` mask of the encoder frames whose receptive field lies within the real input.

    wav2vec2-style encoders (input: samples): the output-length formula of each convolution of the front end,
    `floor((length - kernel) / stride) + 1`, then of the adapter layers when the config has them, as wav2vec2, HuBERT
    and WavLM compute their frames. Whisper (input: log-mel frames): its stride-2 convolution,
    `floor((length - 1) / 2) + 1`."""
    lengths = sample_mask.sum(dim=-1)
    if audio_config.model_type == "whisper":
        lengths = torch.div(lengths - 1, WHISPER_MEL_FRAMES_PER_FRAME, rounding_mode="floor") + 1
        return torch.arange(num_frames, device=sample_mask.device)[None, :] < lengths[:, None]
    for kernel, stride in zip(audio_config.conv_kernel, audio_config.conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    if getattr(audio_config, "add_adapter", False):
        for _ in range(audio_config.num_adapter_layers):
            lengths = torch.div(lengths - 1, audio_config.adapter_stride, rounding_mode="floor") + 1
    frames = torch.arange(num_frames, device=sample_mask.device)
    return frames[None, :] < lengths[:, None]


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `states` `(batch, length, hidden)` over the positions where `mask` `(batch, length)` is true."""
    mask = mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def concordance(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation coefficient of each column of `predictions` `(n, d)` with `targets` `(n, d)`:
    `2 cov / (var_p + var_t + (mean_p - mean_t) ** 2)`, population moments, over the rows where the target is not
    NaN. Returns `(d,)`; a column with fewer than two such rows gives 0 (no information: nothing to learn from)."""
    present = ~torch.isnan(targets)
    weights = present.to(predictions.dtype)
    count = weights.sum(dim=0).clamp(min=1.0)
    targets = torch.where(present, targets, torch.zeros_like(targets))
    mean_p, mean_t = (weights * predictions).sum(0) / count, (weights * targets).sum(0) / count
    centred_p, centred_t = (predictions - mean_p) * weights, (targets - mean_t) * weights
    covariance = (centred_p * centred_t).sum(0) / count
    variance_p, variance_t = (centred_p**2).sum(0) / count, (centred_t**2).sum(0) / count
    ccc = 2 * covariance / (variance_p + variance_t + (mean_p - mean_t) ** 2).clamp(min=1e-8)
    return torch.where(present.sum(0) >= 2, ccc, torch.zeros_like(ccc))


def masked_mean_std(states: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean and standard deviation of `states` `(batch, length, hidden)` over the positions where `mask` is true,
    side by side: `(batch, 2 * hidden)`. The deviation is the population one (0 for a single position), kept
    differentiable at 0 by `eps` inside the square root."""
    mean = masked_mean(states, mask)
    weights = mask.to(states.dtype).unsqueeze(-1)
    variance = (weights * (states - mean.unsqueeze(1)) ** 2).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return torch.cat([mean, (variance + eps).sqrt()], dim=-1)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out, returning its weights. `attention_mask` is additive (float) or says which keys may be
    attended (bool), broadcastable to `(batch, heads, queries, keys)`, as transformers' eager and SDPA masks are.
    Returns `(batch, queries, heads, head_dim)` and the weights `(batch, heads, queries, keys)`."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    attended = torch.matmul(F.dropout(weights, p=dropout, training=module.training), value)
    return attended.transpose(1, 2).contiguous(), weights


class MERCrossAttention(nn.Module):
    """Multi-head attention whose queries come from one modality and keys/values from the other. It runs through
    transformers' attention interface, so `config._attn_implementation` ("eager", "sdpa") chooses the kernel."""

    def __init__(self, config: MERConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.fusion_hidden_size // config.fusion_num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.fusion_dropout
        self.is_causal = False  # every query may see every real key
        self.q_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.k_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.v_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.out_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = queries.shape
        heads = (batch, -1, self.config.fusion_num_heads, self.head_dim)
        query = self.q_proj(queries).view(heads).transpose(1, 2)  # (B, h, Lq, d)
        key = self.k_proj(context).view(heads).transpose(1, 2)  # (B, h, Lk, d)
        value = self.v_proj(context).view(heads).transpose(1, 2)
        # Only the written-out attention returns its weights: asking for them falls back to it, as in transformers.
        implementation = "eager" if output_attentions else self.config._attn_implementation
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        attended, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.out_proj(attended.reshape(batch, length, -1)), weights


class MERFusionLayer(GradientCheckpointingLayer):
    """Cross-attention, residual + LayerNorm, feed-forward, residual + LayerNorm (post-norm, as in BERT)."""

    def __init__(self, config: MERConfig):
        super().__init__()
        self.attention = MERCrossAttention(config)
        self.attention_norm = nn.LayerNorm(config.fusion_hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.fusion_hidden_size, config.fusion_intermediate_size),
            nn.GELU(),
            nn.Dropout(config.fusion_dropout),
            nn.Linear(config.fusion_intermediate_size, config.fusion_hidden_size),
        )
        self.output_norm = nn.LayerNorm(config.fusion_hidden_size)
        self.dropout = nn.Dropout(config.fusion_dropout)

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(queries, context, attention_mask, output_attentions, **kwargs)
        states = self.attention_norm(queries + self.dropout(attended))
        states = self.output_norm(states + self.dropout(self.feed_forward(states)))
        return states, weights


class MERFusion(nn.Module):
    """K fusion layers. Per layer, each stream that is a query stream attends to the other stream as it was before
    the layer, so in `bidirectional` mode both directions see the same inputs."""

    def __init__(self, config: MERConfig):
        super().__init__()
        self.config = config
        direction = config.fusion_direction
        layers = range(config.fusion_num_layers)
        self.audio_layers = (
            nn.ModuleList(MERFusionLayer(config) for _ in layers) if direction != "audio_to_text" else None
        )
        self.text_layers = (
            nn.ModuleList(MERFusionLayer(config) for _ in layers) if direction != "text_to_audio" else None
        )

    def forward(
        self,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MERFusionOutput:
        """The fused audio `(B, T, H)` and text `(B, L, H)` streams and, when asked, the attention weights of each
        direction and the joint `[audio ; text]` states before and after every layer."""
        # Keys that are padding are never attended to; the mask takes the form the attention implementation expects.
        words_for_audio = create_bidirectional_mask(self.config, audio, text_mask, encoder_hidden_states=text)
        audio_for_words = create_bidirectional_mask(self.config, text, audio_mask, encoder_hidden_states=audio)
        audio_attentions, text_attentions = [], []
        hidden_states = [torch.cat([audio, text], dim=1)] if output_hidden_states else None
        for index in range(self.config.fusion_num_layers):
            new_audio, new_text = audio, text
            if self.audio_layers is not None:
                new_audio, weights = self.audio_layers[index](
                    audio, text, words_for_audio, output_attentions, **kwargs
                )
                audio_attentions.append(weights)
            if self.text_layers is not None:
                new_text, weights = self.text_layers[index](text, audio, audio_for_words, output_attentions, **kwargs)
                text_attentions.append(weights)
            audio, text = new_audio, new_text
            if output_hidden_states:
                hidden_states.append(torch.cat([audio, text], dim=1))
        if not output_attentions:
            audio_attentions = text_attentions = []
        return MERFusionOutput(
            audio=audio,
            text=text,
            audio_attentions=tuple(audio_attentions) or None,
            text_attentions=tuple(text_attentions) or None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
        )


class MERWhisperEncoder(WhisperEncoder):
    """Whisper's encoder, run on the length of the batch instead of a 30-second window.

    Stock Whisper pads every input to 30 s (3000 log-mel frames) and attends over the padding; MER runs the same
    weights on the batch's own log-mel frames (up to 3000), with the first positional embeddings, and masks the
    padding of shorter items: the two convolutions see zeros beyond an item's end, as they do at the end of the
    item alone, and self-attention never attends to padded frames. So a batched item gets exactly the frames it
    gets alone, and a full 30 s window gets exactly what stock Whisper gives. Its parameters are Whisper's encoder's,
    under the same names.
    """

    @classmethod
    def from_whisper(cls, whisper: PreTrainedModel) -> MERWhisperEncoder:
        """The encoder of a loaded Whisper model (`WhisperModel` or `WhisperForConditionalGeneration`), as this
        class, sharing its weights, dtype, device and attention implementation; the decoder is left behind."""
        encoder = whisper.get_encoder()
        encoder.__class__ = cls  # same modules and parameters: only `forward` differs
        return encoder

    def freeze_feature_encoder(self) -> None:
        """Stops gradients through the two convolutions of the front end (the positional embeddings never learn)."""
        for module in (self.conv1, self.conv2):
            module.requires_grad_(False)

    def _spec_augment(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """SpecAugment (Park et al., 2019) as Whisper's config describes it (`mask_time_prob`, `mask_time_length`,
        `mask_time_min_masks`, and the same for mel bins): spans of log-mel frames and of mel bins set to 0, the
        value `WhisperModel` masks with, each item's spans within its own length. Training only."""
        config = self.config
        _, bins, frames = input_features.shape
        lengths = attention_mask.sum(dim=-1)
        time = _random_spans(
            lengths, frames, config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks
        )
        mels = _random_spans(
            torch.full_like(lengths, bins),
            bins,
            config.mask_feature_prob,
            config.mask_feature_length,
            config.mask_feature_min_masks,
        )
        masked = time[:, None, :] | mels[:, :, None]  # (B, bins, frames)
        return input_features.masked_fill(masked, 0.0)

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, num_mel_bins, num_mel_frames)`):
                Log-mel features as Whisper's feature extractor computes them, each item on its own length and
                zero-padded on the right to the batch's longest ([`MERProcessor`] does this); at most
                `2 * max_source_positions` frames.
            attention_mask (`torch.LongTensor` of shape `(batch_size, num_mel_frames)`, *optional*):
                1 for real log-mel frames, 0 for padding.
            output_hidden_states (`bool`, *optional*):
                Also return the embeddings and every layer's output (the last one after the final layer norm).
            kwargs: passed to the attention of every layer; `output_attentions` is not supported (the layers'
                weights are not returned).
        """
        kwargs.pop("output_attentions", None)
        frames = input_features.shape[-1]
        if not is_torchdynamo_compiling() and frames > WHISPER_MEL_FRAMES_PER_FRAME * self.max_source_positions:
            raise ValueError(
                f"input_features has {frames} log-mel frames; Whisper's encoder takes at most "
                f"{WHISPER_MEL_FRAMES_PER_FRAME * self.max_source_positions} (its 30 s window)."
            )
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[::2], dtype=torch.long, device=input_features.device)
        if self.training and getattr(self.config, "apply_spec_augment", False):
            input_features = self._spec_augment(input_features, attention_mask)
        mel_mask = attention_mask[:, None, :].to(input_features.dtype)
        states = nn.functional.gelu(self.conv1(input_features * mel_mask)) * mel_mask
        states = nn.functional.gelu(self.conv2(states)).permute(0, 2, 1)  # (B, T, H)
        frame_mask = audio_frame_mask(attention_mask, self.config, states.shape[1])
        states = states + self.embed_positions.weight[: states.shape[1]]
        states = nn.functional.dropout(states, p=self.dropout, training=self.training)
        mask = create_bidirectional_mask(self.config, states, frame_mask)
        hidden_states = [states]
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue  # LayerDrop, as Whisper trains it
            states = layer(states, mask, **kwargs)
            hidden_states.append(states)
        states = self.layer_norm(states)
        hidden_states[-1] = states
        return BaseModelOutput(
            last_hidden_state=states, hidden_states=tuple(hidden_states) if output_hidden_states else None
        )


class MismatchedClassesError(RuntimeError, ValueError):
    """A saved model loaded for another number of classes without `ignore_mismatched_sizes=True`. A `RuntimeError`
    as transformers raises for weights of the wrong size (and a `ValueError`, as MER raised before)."""


class MERPreTrainedModel(PreTrainedModel):
    config_class = MERConfig
    base_model_prefix = "mer"
    main_input_name = "input_values"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    # The fusion runs through the attention interface with eager or SDPA kernels. Flash attention is left to the
    # encoders (attn_implementation={"audio_config": ..., "text_config": ..., "": "sdpa"}): transformers' flash path
    # assumes queries padded like their keys, which cross-attention between two modalities breaks.
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["MERFusionLayer"]  # the encoders add their own layer classes

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only MER's own modules reach here: the encoders are PreTrainedModels and initialise themselves, and
        # pretrained encoder weights are never touched (see from_audio_text_pretrained).
        super()._init_weights(module)
        if isinstance(module, MERModel) and module.layer_weights is not None:
            module.layer_weights.fill_(1.0 / module.layer_weights.numel())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As transformers' `from_pretrained`. New classes (`num_labels=` or `id2label=`) replace the classifier and
        the auxiliary heads: that needs `ignore_mismatched_sizes=True`, and the new heads must be fine-tuned.

        Raises:
            MismatchedClassesError: a new number of classes without `ignore_mismatched_sizes=True`, naming the saved
                classes (a `RuntimeError`, as transformers raises for weights of the wrong size).
        """
        config = kwargs.get("config")
        wanted = kwargs.get("num_labels") or len(kwargs.get("id2label") or {}) or None
        if wanted is None and isinstance(config, PretrainedConfig):  # AutoModel passes the config it built
            wanted = config.num_labels
        # Nothing saved to compare with when the weights come as a state dict (`from_pretrained(None, config=...,
        # state_dict=...)`): no config to read, and no network to reach for one.
        saved_somewhere = pretrained_model_name_or_path is not None
        if saved_somewhere and wanted is not None and not kwargs.get("ignore_mismatched_sizes", False):
            hub = ("cache_dir", "revision", "token", "local_files_only", "subfolder")
            saved = cls.config_class.from_pretrained(
                pretrained_model_name_or_path, **{key: kwargs[key] for key in hub if key in kwargs}
            )
            if saved.num_labels != wanted:
                names = ", ".join(saved.id2label[index] for index in range(saved.num_labels))
                raise MismatchedClassesError(
                    f"{pretrained_model_name_or_path} classifies {saved.num_labels} classes ({names}); you asked "
                    f"for {wanted}. Pass ignore_mismatched_sizes=True to give it a new, untrained classifier and "
                    "auxiliary heads of that size (every other weight is loaded), then fine-tune it."
                )
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


class MERModel(MERPreTrainedModel):
    """
    Multimodal emotion recognition from speech and its transcript.

    `audio encoder -> frames (B, T, Ha)` and `text encoder -> tokens (B, L, Ht)`, each projected to the fusion size
    (`get_audio_features`, `get_text_features`); K cross-modal attention layers (padding masked); masked mean pooling
    of each stream; concatenation (`get_fused_features`); classifier. In training, when labels are given, the
    auxiliary tasks reuse the encoder outputs of the batch: no second encoder pass.
    """

    def __init__(
        self,
        config: MERConfig,
        audio_encoder: PreTrainedModel | None = None,
        text_encoder: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        if audio_encoder is None:
            audio_encoder = (
                MERWhisperEncoder(config.audio_config)
                if config.audio_family == "whisper"
                else AutoModel.from_config(config.audio_config)
            )
        self.audio_encoder = audio_encoder
        self.text_encoder = text_encoder if text_encoder is not None else AutoModel.from_config(config.text_config)
        # BERT's pooler is never used (MER pools tokens itself); dropping it keeps DDP free of unused parameters.
        if getattr(self.text_encoder, "pooler", None) is not None:
            self.text_encoder.pooler = None
        # One source of truth: the sub-configs are the encoders' own configs.
        config.audio_config, config.text_config = self.audio_encoder.config, self.text_encoder.config

        hidden = config.fusion_hidden_size
        num_audio_layers = config.audio_config.num_hidden_layers + 1  # the front end's output and every layer
        self.layer_weights = nn.Parameter(torch.ones(num_audio_layers)) if config.use_weighted_layer_sum else None
        self.audio_projection = nn.Linear(config.audio_config.hidden_size, hidden)
        self.text_projection = nn.Linear(config.text_config.hidden_size, hidden)
        self.fusion = MERFusion(config)
        self.dropout = nn.Dropout(config.fusion_dropout)
        pooled = 2 * hidden * (2 if config.pooling == "mean_std" else 1)  # both streams, mean (and std) each
        self.classifier = (
            nn.Sequential(nn.Linear(pooled, hidden), nn.GELU(), nn.Linear(hidden, config.num_labels))
            if config.predicts_classes
            else None  # a dimensions-only model
        )
        # Auxiliary heads: trained on mismatched pairs, never used at inference.
        self.cross_pair_audio_head = nn.Linear(pooled, config.num_labels) if config.use_cross_pair_task else None
        self.cross_pair_text_head = nn.Linear(pooled, config.num_labels) if config.use_cross_pair_task else None
        self.consistency_head = nn.Linear(pooled, 1) if config.use_consistency_task else None
        # Dimensions of emotion, each squashed into [0, 1].
        self.dimension_head = (
            nn.Sequential(nn.Linear(pooled, hidden), nn.GELU(), nn.Linear(hidden, len(config.dimensions)))
            if config.dimensions
            else None
        )

        if config.freeze_feature_encoder:
            self.freeze_feature_encoder()
        if config.freeze_audio_encoder is not False:
            self.freeze_audio_encoder(None if config.freeze_audio_encoder is True else config.freeze_audio_encoder)
        self.post_init()

    @classmethod
    def from_audio_text_pretrained(
        cls,
        audio_model_name_or_path: str,
        text_model_name_or_path: str,
        audio_kwargs: dict | None = None,
        text_kwargs: dict | None = None,
        **config_kwargs,
    ) -> MERModel:
        """Builds a model around two pretrained encoders (Hub ids or local directories).

        The audio model is a wav2vec2-style model (wav2vec2, HuBERT, WavLM, data2vec-audio) or a Whisper model of any
        size, of which only the encoder is kept. `audio_kwargs` / `text_kwargs` go to each encoder's
        `AutoModel.from_pretrained` (e.g. `revision`, `dtype`); `config_kwargs` to [`MERConfig`] (fusion size, K,
        heads, `id2label`, ...). The projections, fusion and heads are new and randomly initialised: the model needs
        fine-tuning before its predictions mean anything. When both encoders are loaded in one dtype (say bf16), the
        new modules are created in it too.

        Raises:
            ValueError: an audio model of no supported family or a text model that is not a text encoder, before
                any weight is loaded.
        """
        audio_kwargs, text_kwargs = dict(audio_kwargs or {}), dict(text_kwargs or {})
        hub = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "trust_remote_code")
        MERConfig(  # checks both encoders' kinds from their configs alone
            audio_config=AutoConfig.from_pretrained(
                audio_model_name_or_path, **{key: audio_kwargs[key] for key in hub if key in audio_kwargs}
            ),
            text_config=AutoConfig.from_pretrained(
                text_model_name_or_path, **{key: text_kwargs[key] for key in hub if key in text_kwargs}
            ),
        )
        audio_encoder = AutoModel.from_pretrained(audio_model_name_or_path, **audio_kwargs)
        if audio_encoder.config.model_type == "whisper":
            audio_encoder = MERWhisperEncoder.from_whisper(audio_encoder)
        text_encoder = AutoModel.from_pretrained(text_model_name_or_path, **text_kwargs)
        # Copies: building the config must not reset the attention implementation the encoders were loaded with.
        config = MERConfig(
            audio_config=audio_encoder.config.to_dict(), text_config=text_encoder.config.to_dict(), **config_kwargs
        )
        model = cls(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
        new_modules = [name for name, _ in model.named_children() if name not in ("audio_encoder", "text_encoder")]
        if audio_encoder.dtype == text_encoder.dtype != torch.float32:
            for name in new_modules:
                getattr(model, name).to(audio_encoder.dtype)
            if model.layer_weights is not None:
                model.layer_weights.data = model.layer_weights.data.to(audio_encoder.dtype)
        logger.warning(
            f"MER model built from {audio_model_name_or_path} and {text_model_name_or_path}: the modules "
            f"{new_modules} are newly initialised. Fine-tune the model before using it for predictions."
        )
        return model

    def freeze_feature_encoder(self) -> None:
        """Stops gradients through the convolutional front end of the audio encoder."""
        freeze = getattr(self.audio_encoder, "freeze_feature_encoder", None)
        if freeze is None:
            raise ValueError(f"{type(self.audio_encoder).__name__} has no convolutional feature encoder to freeze.")
        freeze()

    def freeze_audio_encoder(self, num_layers: int | None = None) -> None:
        """Stops gradients through the whole audio encoder (`num_layers=None`), or through its front end and its
        lowest `num_layers` transformer layers; the layers above, and the final layer norm after them, still learn.

        Raises:
            ValueError: `num_layers` outside `[0, number of layers]`.
        """
        layers = self._audio_layers()
        if num_layers is None or num_layers == len(layers):
            self.audio_encoder.requires_grad_(False)
            return
        if not 0 <= num_layers <= len(layers):
            raise ValueError(f"freeze_audio_encoder={num_layers}: the audio encoder has {len(layers)} layers.")
        learning = [layers[index] for index in range(num_layers, len(layers))]
        final_norm = getattr(self.audio_encoder, "layer_norm", None)  # Whisper's, after its last layer
        if getattr(self.config.audio_config, "do_stable_layer_norm", False):
            final_norm = self.audio_encoder.encoder.layer_norm  # pre-norm wav2vec2 (large): after its last layer
        learning += [final_norm] if final_norm is not None else []
        keep = {id(parameter) for module in learning for parameter in module.parameters()}
        for parameter in self.audio_encoder.parameters():
            if id(parameter) not in keep:
                parameter.requires_grad_(False)

    def _audio_layers(self) -> nn.ModuleList:
        """The audio encoder's transformer layers."""
        encoder = self.audio_encoder
        return encoder.layers if isinstance(encoder, WhisperEncoder) else encoder.encoder.layers

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Only AutoModel: a prediction needs the transcript, which the audio-classification pipeline cannot pass.
        module = type(self).__module__.rsplit(".", 1)[-1]
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.pop("AutoModelForAudioClassification", None)
        self.config.auto_map = {**auto_map, "AutoModel": f"{module}.{type(self).__name__}"}
        # A pipeline's file and its `custom_pipelines` entry are saved by the pipeline (`MERPipeline.save_pretrained`,
        # which copies its file first); an entry whose file is not there would send `pipeline(...)` looking for it.
        pipelines = dict(getattr(self.config, "custom_pipelines", None) or {})
        kept = {
            task: info
            for task, info in pipelines.items()
            if (Path(save_directory) / f"{str(info.get('impl', '')).split('.')[0]}.py").is_file()
        }
        if kept != pipelines:
            logger.warning(
                "Saving %s without its pipeline's code (%s): save through the pipeline (MERPipeline.save_pretrained) "
                "for pipeline(...) to load it.", save_directory, ", ".join(sorted(set(pipelines) - set(kept))),
            )  # fmt: skip
        self.config.custom_pipelines = kept
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.custom_pipelines = pipelines

    def validate_inputs(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> None:
        """Checks a batch before it reaches the encoders; `forward` calls it outside `torch.compile` / `torch.export`
        tracing (whose graphs cannot hold data-dependent checks: validate there first).

        Raises:
            ValueError: the audio input this encoder does not take (`input_values` for wav2vec2-style encoders,
                `input_features` for Whisper) or of the wrong shape, audio and text batches of different sizes, a
                transcript longer than the text encoder's positions, or an utterance shorter than one audio frame
                (`config.audio_receptive_field` samples) or longer than the encoder's window (Whisper: 30 s),
                naming the items.
        """
        audio = self._audio_input(input_values, input_features)
        if input_ids is None:
            raise ValueError("input_ids is missing: MER needs the transcript's tokens (MERProcessor makes them).")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}.")
        whisper = self.config.audio_family == "whisper"
        if whisper and (audio.dim() != 3 or audio.shape[1] != self.config.audio_config.num_mel_bins):
            bins = self.config.audio_config.num_mel_bins
            raise ValueError(f"input_features must be (batch, {bins} mel bins, frames), got {tuple(audio.shape)}.")
        if not whisper and audio.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(audio.shape)}.")
        if len(input_ids) != len(audio):
            raise ValueError(f"The batch has {len(audio)} audio items but {len(input_ids)} transcripts.")
        limit = getattr(self.config.text_config, "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] > limit:
            raise ValueError(
                f"Transcripts of {input_ids.shape[1]} tokens are longer than the text encoder's {limit} positions; "
                f"truncate them, e.g. processor(..., max_text_length={limit})."
            )
        lengths = [
            int(length)
            for length in (
                audio_attention_mask.sum(dim=-1)
                if audio_attention_mask is not None
                else [audio.shape[-1]] * len(audio)
            )
        ]
        # Whisper's input counts log-mel frames of WHISPER_HOP_LENGTH samples each (its processor refuses clips
        # shorter than one analysis window; here one frame is the least).
        samples = [length * WHISPER_HOP_LENGTH for length in lengths] if whisper else lengths
        unit = "log-mel frames" if whisper else "samples"
        shortest = 1 if whisper else self.config.audio_receptive_field
        too_short = [index for index, length in enumerate(lengths) if length < shortest]
        if too_short:
            items = "; ".join(f"item {index} has {lengths[index]} {unit}" for index in too_short)
            raise ValueError(
                f"Audio too short for the audio encoder, which needs at least {self.config.audio_receptive_field} "
                f"samples for one frame: {items}."
            )
        longest = self.config.audio_max_samples
        too_long = [index for index, length in enumerate(samples) if longest is not None and length > longest]
        if too_long:
            items = "; ".join(f"item {index} has {samples[index]} samples" for index in too_long)
            raise ValueError(
                f"Audio longer than the audio encoder's window of {self.config.audio_max_seconds:.0f} s "
                f"({longest} samples): {items}. Crop it, or split it into windows and classify each."
            )

    def _audio_input(self, input_values: torch.Tensor | None, input_features: torch.Tensor | None) -> torch.Tensor:
        """The audio input this model's encoder reads, refusing the other kind with a message that says which."""
        if self.config.audio_family == "whisper":
            wanted, given, other = "input_features", input_features, input_values
        else:
            wanted, given, other = "input_values", input_values, input_features
        if given is None:
            hint = (
                f" (got {'input_values' if wanted == 'input_features' else 'input_features'} instead)"
                if other is not None
                else ""
            )
            kind = "log-mel features" if wanted == "input_features" else "waveforms"
            raise ValueError(
                f"This model's audio encoder ({self.config.audio_config.model_type}) reads {wanted}, its {kind}"
                f"{hint}: prepare the audio with its own MERProcessor."
            )
        return given

    def _encode_audio(
        self,
        input_values: torch.Tensor | None,
        audio_attention_mask: torch.Tensor | None,
        input_features: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[ModelOutput, MERFeaturesOutput]:
        """The audio tower's own outputs, and its frames projected to the fusion size with their mask."""
        audio = self._audio_input(input_values, input_features)
        if audio_attention_mask is None:
            audio_attention_mask = torch.ones((len(audio), audio.shape[-1]), dtype=torch.long, device=audio.device)
        encoder_mask = audio_attention_mask if self.config.audio_encoder_takes_mask else None
        outputs = self.audio_encoder(
            audio.to(self.audio_encoder.dtype),
            attention_mask=encoder_mask,
            output_hidden_states=output_hidden_states or self.layer_weights is not None,
            **({"output_attentions": True} if output_attentions else {}),
        )
        if self.layer_weights is not None:
            layers = torch.stack(outputs.hidden_states, dim=0)  # (layers, B, T, Ha)
            weights = self.layer_weights.softmax(dim=0).to(layers.dtype)
            states = (weights[:, None, None, None] * layers).sum(dim=0)
        else:
            states = outputs.last_hidden_state  # (B, T, Ha)
        mask = audio_frame_mask(audio_attention_mask, self.config.audio_config, states.shape[1])
        hidden_states = outputs.hidden_states if output_hidden_states else None
        return outputs, _projected(self.audio_projection, states, mask, hidden_states)

    def _encode_text(
        self,
        input_ids: torch.Tensor,
        text_attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[ModelOutput, MERFeaturesOutput]:
        """The text tower's own outputs, and its tokens projected to the fusion size with their mask."""
        if text_attention_mask is None:
            text_attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        outputs = self.text_encoder(
            input_ids,
            attention_mask=text_attention_mask,
            output_hidden_states=output_hidden_states,
            **({"output_attentions": True} if output_attentions else {}),
            **extra,
        )
        hidden_states = outputs.hidden_states if output_hidden_states else None
        mask = text_attention_mask.bool()
        return outputs, _projected(self.text_projection, outputs.last_hidden_state, mask, hidden_states)

    @can_return_tuple
    def get_audio_features(
        self,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        The audio tower's outputs, with the utterance's embedding in the fusion space as `pooler_output`, as
        transformers' dual encoders (CLIP, CLAP) give their towers' features.

        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
                wav2vec2-style encoders: normalised waveforms at the feature extractor's rate, zero-padded on the
                right ([`MERProcessor`]).
            audio_attention_mask (`torch.LongTensor` of shape `(batch_size, audio length)`, *optional*):
                1 for real samples (Whisper: log-mel frames), 0 for padding. Without it everything counts as real.
            input_features (`torch.FloatTensor` of shape `(batch_size, num_mel_bins, num_mel_frames)`):
                Whisper encoders: log-mel features ([`MERProcessor`]), instead of `input_values`.
            kwargs: `output_hidden_states`, `output_attentions` (the tower's), `return_dict`.

        Returns:
            [`~modeling_outputs.BaseModelOutputWithPooling`]: `last_hidden_state`, `hidden_states` and `attentions`
            are the audio encoder's own; `pooler_output` `(batch_size, fusion_hidden_size)` is the masked mean of its
            frames projected to the fusion size (the frames the fusion reads: with `use_weighted_layer_sum`, the
            weighted sum of the layers). [`~MERModel.project_audio_features`] gives the projected frames themselves.
        """
        outputs, projected = self._encode_audio(
            input_values,
            audio_attention_mask,
            input_features,
            self._config_default("output_hidden_states", kwargs.get("output_hidden_states")),
            self._config_default("output_attentions", kwargs.get("output_attentions")),
        )
        return _tower_features(outputs, projected)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        The text tower's outputs, with the transcript's embedding in the fusion space as `pooler_output`, as
        transformers' dual encoders (CLIP, CLAP) give their towers' features.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
                Transcript tokens, padded on the right.
            text_attention_mask (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                1 for real tokens, 0 for padding.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Segment ids for text encoders that use them.
            kwargs: `output_hidden_states`, `output_attentions` (the tower's), `return_dict`.

        Returns:
            [`~modeling_outputs.BaseModelOutputWithPooling`]: `last_hidden_state`, `hidden_states` and `attentions`
            are the text encoder's own; `pooler_output` `(batch_size, fusion_hidden_size)` is the masked mean of its
            tokens projected to the fusion size. [`~MERModel.project_text_features`] gives the projected tokens.
        """
        outputs, projected = self._encode_text(
            input_ids,
            text_attention_mask,
            token_type_ids,
            self._config_default("output_hidden_states", kwargs.get("output_hidden_states")),
            self._config_default("output_attentions", kwargs.get("output_attentions")),
        )
        return _tower_features(outputs, projected)

    def project_audio_features(
        self,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        input_features: torch.Tensor | None = None,
    ) -> MERFeaturesOutput:
        """The audio encoder's frames projected to the fusion size, their mask and their masked mean: what
        [`~MERModel.fuse`] reads (arguments as for [`~MERModel.get_audio_features`]; `output_hidden_states` also
        returns the encoder's own hidden states)."""
        output_hidden_states = self._config_default("output_hidden_states", output_hidden_states)
        return self._encode_audio(input_values, audio_attention_mask, input_features, output_hidden_states)[1]

    def project_text_features(
        self,
        input_ids: torch.Tensor,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> MERFeaturesOutput:
        """The text encoder's tokens projected to the fusion size, their mask and their masked mean: what
        [`~MERModel.fuse`] reads (arguments as for [`~MERModel.get_text_features`])."""
        output_hidden_states = self._config_default("output_hidden_states", output_hidden_states)
        return self._encode_text(input_ids, text_attention_mask, token_type_ids, output_hidden_states)[1]

    def get_fused_features(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> MERFeaturesOutput:
        """The fused audio frames and tokens, their mask, and the pooled pair the classifier reads
        (`pooler_output`, `(batch_size, 2 * fusion_hidden_size)`, twice that with `pooling="mean_std"`). Arguments
        as for `forward`."""
        audio = self.project_audio_features(input_values, audio_attention_mask, False, input_features)
        text = self.project_text_features(input_ids, text_attention_mask, token_type_ids, output_hidden_states=False)
        return self.fuse(audio, text)

    def fuse(
        self,
        audio: MERFeaturesOutput,
        text: MERFeaturesOutput,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MERFeaturesOutput:
        """The fusion layers and pooling on features from `project_audio_features` and `project_text_features` (for
        instance cached ones): what the model adds to its encoders before the classifier. `model.classifier` on the
        returned `pooler_output` gives the logits `forward` gives."""
        fused = self.fusion(
            audio.last_hidden_state,
            audio.attention_mask,
            text.last_hidden_state,
            text.attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        pool = masked_mean_std if self.config.pooling == "mean_std" else masked_mean
        pooled = torch.cat([pool(fused.audio, audio.attention_mask), pool(fused.text, text.attention_mask)], dim=-1)
        return MERFeaturesOutput(
            last_hidden_state=torch.cat([fused.audio, fused.text], dim=1),
            attention_mask=torch.cat([audio.attention_mask, text.attention_mask], dim=1),
            pooler_output=pooled,
            hidden_states=fused.hidden_states,
            audio_attentions=fused.audio_attentions,
            text_attentions=fused.text_attentions,
        )

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        input_features: torch.Tensor | None = None,
        dimension_labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MEROutput:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
                wav2vec2-style audio encoders: normalised waveforms at the feature extractor's rate, zero-padded on
                the right ([`MERProcessor`]).
            input_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
                Transcript tokens, padded on the right.
            audio_attention_mask (`torch.LongTensor` of shape `(batch_size, audio length)`, *optional*):
                1 for real samples (Whisper: log-mel frames), 0 for padding. Without it everything counts as real.
            text_attention_mask (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                1 for real tokens, 0 for padding.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Segment ids for text encoders that use them.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, num_labels)`. Give them to get `loss`; in training mode they also switch on
                the auxiliary tasks. A dimensions-only model takes none.
            output_attentions (`bool`, *optional*):
                Return the cross-modal attention weights of every fusion layer (computed by the written-out
                attention whatever `attn_implementation` says). Defaults to `config.output_attentions`.
            output_hidden_states (`bool`, *optional*):
                Return the fusion's states and both encoders' hidden states. Defaults to
                `config.output_hidden_states`.
            input_features (`torch.FloatTensor` of shape `(batch_size, num_mel_bins, num_mel_frames)`):
                Whisper audio encoders: log-mel features, each utterance on its own length, zero-padded on the right
                ([`MERProcessor`]), instead of `input_values`.
            dimension_labels (`torch.FloatTensor` of shape `(batch_size, len(config.dimensions))`, *optional*):
                The dimensions' true values on [0, 1], NaN where an utterance has none: give them to a model with
                `config.dimensions` to get `dimension_loss`.
            return_dict (`bool`, *optional*):
                `False` returns the set fields of [`MEROutput`] as a tuple. Defaults to `config.return_dict`.
            kwargs:
                Passed to the attention implementation of the fusion layers.

        Raises:
            ValueError: as [`~MERModel.validate_inputs`] (outside compiled or exported graphs).
        """
        output_attentions = self._config_default("output_attentions", output_attentions)
        output_hidden_states = self._config_default("output_hidden_states", output_hidden_states)
        if not is_torchdynamo_compiling():
            self.validate_inputs(input_values, input_ids, audio_attention_mask, text_attention_mask, input_features)
        audio = self.project_audio_features(input_values, audio_attention_mask, output_hidden_states, input_features)
        text = self.project_text_features(input_ids, text_attention_mask, token_type_ids, output_hidden_states)

        fused = self.fuse(audio, text, output_attentions, output_hidden_states, **kwargs)
        pooled = fused.pooler_output
        logits = None if self.classifier is None else self.classifier(self.dropout(pooled))
        dimensions = None if self.dimension_head is None else self.dimension_head(self.dropout(pooled)).sigmoid()

        loss = classification_loss = dimension_loss = aux_losses = None
        if labels is not None:
            if logits is None:
                raise ValueError(
                    "labels given to a dimensions-only model (config.id2label is empty): it has no classes to train; "
                    "give dimension_labels."
                )
            classification_loss = F.cross_entropy(logits.float(), labels)
            loss = classification_loss
            if self.training and len(labels) > 1:
                aux_losses = self._auxiliary_losses(audio, text, pooled, labels)
                loss = loss + sum(self.config.aux_loss_weights[task] * value for task, value in aux_losses.items())
        if dimension_labels is not None:
            if dimensions is None:
                raise ValueError("dimension_labels given to a model without dimensions (config.dimensions is None).")
            if dimension_labels.shape != dimensions.shape:
                raise ValueError(
                    f"dimension_labels has shape {tuple(dimension_labels.shape)}; the model predicts "
                    f"{tuple(dimensions.shape)} (batch, {', '.join(self.config.dimensions)})."
                )
            dimension_loss = 1 - concordance(dimensions.float(), dimension_labels.float()).mean()
            weighted = self.config.dimension_loss_weight * dimension_loss
            loss = weighted if loss is None else loss + weighted
        return MEROutput(
            loss=loss,
            logits=logits,
            dimensions=dimensions,
            classification_loss=classification_loss,
            dimension_loss=dimension_loss,
            aux_losses=aux_losses,
            pooled_output=pooled,
            audio_frame_mask=audio.attention_mask.long(),
            hidden_states=fused.hidden_states,
            attentions=_joint_attentions(fused, audio.attention_mask.shape[1], text.attention_mask.shape[1]),
            audio_encoder_hidden_states=audio.hidden_states,
            text_encoder_hidden_states=text.hidden_states,
            audio_attentions=fused.audio_attentions,
            text_attentions=fused.text_attentions,
        )

    def _config_default(self, name: str, value: bool | None) -> bool:
        return bool(getattr(self.config, name, False)) if value is None else value

    def _auxiliary_losses(
        self, audio: MERFeaturesOutput, text: MERFeaturesOutput, matched_pooled: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Pairs audio i with the text of utterance `partner[i] != i` and fuses the mismatched pairs once.

        cross_pair: two heads predict the audio's label and the text's label from the mismatched fusion, so the
        fused representation must keep what each modality says (against one modality dominating the fusion).
        consistency: one head says whether a pair carries the same emotion; matched pairs and mismatched pairs
        with equal labels are positives (aligns the emotion-related features of the two modalities).
        """
        if not (self.config.use_cross_pair_task or self.config.use_consistency_task):
            return {}  # no mismatched fusion when no task needs it
        partner = _random_derangement(len(labels), labels.device)
        partner_text = MERFeaturesOutput(
            last_hidden_state=text.last_hidden_state[partner], attention_mask=text.attention_mask[partner]
        )
        mismatched = self.dropout(self.fuse(audio, partner_text).pooler_output)
        losses = {}
        if self.config.use_cross_pair_task:
            losses["cross_pair"] = F.cross_entropy(
                self.cross_pair_audio_head(mismatched).float(), labels
            ) + F.cross_entropy(self.cross_pair_text_head(mismatched).float(), labels[partner])
        if self.config.use_consistency_task:
            pooled = torch.cat([self.dropout(matched_pooled), mismatched])  # (2B, 2H)
            same = torch.cat([torch.ones_like(labels), (labels == labels[partner]).long()]).float()
            losses["consistency"] = F.binary_cross_entropy_with_logits(
                self.consistency_head(pooled).squeeze(-1).float(), same
            )
        return losses


def _joint_attentions(fused: MERFusionOutput, num_frames: int, num_tokens: int) -> tuple[torch.Tensor, ...] | None:
    """Each fusion layer's attention of both directions in one `(B, heads, frames + tokens, frames + tokens)`
    matrix, in the layout of the fused states (see `MEROutput.attentions`); None when none were returned."""
    audio, text = fused.audio_attentions, fused.text_attentions
    if audio is None and text is None:
        return None
    layers = []
    for index in range(len(audio if audio is not None else text)):
        some = (audio if audio is not None else text)[index]
        joint = some.new_zeros(some.shape[0], some.shape[1], num_frames + num_tokens, num_frames + num_tokens)
        if audio is not None:
            joint[:, :, :num_frames, num_frames:] = audio[index]
        if text is not None:
            joint[:, :, num_frames:, :num_frames] = text[index]
        layers.append(joint)
    return tuple(layers)


def _tower_features(outputs: ModelOutput, projected: MERFeaturesOutput) -> BaseModelOutputWithPooling:
    """A tower's own outputs with its projected masked mean as `pooler_output`."""
    return BaseModelOutputWithPooling(
        last_hidden_state=outputs.last_hidden_state,
        pooler_output=projected.pooler_output,
        hidden_states=projected.hidden_states,
        attentions=getattr(outputs, "attentions", None),
    )


def _projected(
    projection: nn.Linear, states: torch.Tensor, mask: torch.Tensor, hidden_states: tuple | None
) -> MERFeaturesOutput:
    """An encoder's states `(B, T, Ha)` projected to the fusion size, with their mask and masked mean."""
    # The encoder may run in another dtype than the fusion; a dynamically quantized projection (whose `weight` is a
    # method) takes float input as it comes.
    weight = projection.weight
    projected = projection(states.to(weight.dtype) if isinstance(weight, torch.Tensor) else states)  # (B, T, H)
    return MERFeaturesOutput(
        last_hidden_state=projected,
        attention_mask=mask,
        pooler_output=masked_mean(projected, mask),
        hidden_states=hidden_states,
    )


def _random_spans(lengths: torch.Tensor, size: int, prob: float, span: int, min_spans: int) -> torch.BoolTensor:
    """`(B, size)`: for each item, about `prob * length / span` spans of `span` positions (at least `min_spans`, as
    many as fit) starting at random within its first `length` positions; none where `prob` is 0."""
    masked = torch.zeros((len(lengths), size), dtype=torch.bool, device=lengths.device)
    if prob <= 0:
        return masked
    for item, length in enumerate(lengths.tolist()):
        width = min(span, length)
        if width < 1:
            continue
        count = max(min_spans, int(prob * length / width + torch.rand(()).item()))
        starts = torch.randint(0, length - width + 1, (min(count, length // width),), device=lengths.device)
        for start in starts.tolist():
            masked[item, start : start + width] = True
    return masked


def _random_derangement(size: int, device: torch.device) -> torch.Tensor:
    """A random permutation with no fixed point: a random cycle through all `size >= 2` items."""
    order = torch.randperm(size, device=device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner
