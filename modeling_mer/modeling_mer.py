"""MER: wav2vec 2.0 + BERT joined by K layers of cross-modal multi-head attention, trained with two auxiliary tasks
(Sun, He & Han, "Using Auxiliary Tasks in Multimodal Fusion of Wav2vec 2.0 and BERT for Multimodal Emotion
Recognition", ICASSP 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .configuration_mer import MERConfig

__all__ = ["MERModel", "MEROutput", "MERPreTrainedModel", "audio_frame_mask", "masked_mean"]

logger = logging.get_logger(__name__)


@dataclass
class MEROutput(ModelOutput):
    """
    Output of [`MERModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            `classification_loss + w1 * aux_losses["cross_pair"] + w2 * aux_losses["consistency"]`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Emotion scores (before softmax).
        classification_loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            Cross-entropy of `logits` against `labels`.
        aux_losses (`dict[str, torch.FloatTensor]`, returned when training with `labels`):
            The unweighted auxiliary losses that are switched on, keyed by task (`"cross_pair"`, `"consistency"`).
        pooled_output (`torch.FloatTensor` of shape `(batch_size, 2 * fusion_hidden_size)`):
            Masked means of the fused audio and text streams, concatenated: the classifier's input.
        audio_frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`):
            Which audio frames are speech rather than padding.
        audio_attentions (`tuple[torch.FloatTensor]`, one per fusion layer, returned with `output_attentions=True`
            when audio frames are queries): `(batch_size, num_heads, num_frames, num_tokens)`.
        text_attentions (`tuple[torch.FloatTensor]`, one per fusion layer, returned with `output_attentions=True`
            when words are queries): `(batch_size, num_heads, num_tokens, num_frames)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    aux_losses: dict[str, torch.FloatTensor] | None = None
    pooled_output: torch.FloatTensor | None = None
    audio_frame_mask: torch.BoolTensor | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None


def audio_frame_mask(sample_mask: torch.Tensor, audio_config: PretrainedConfig, num_frames: int) -> torch.BoolTensor:
    """Turns a `(batch, samples)` mask of real (1) and padded (0) samples, padded on the right, into a
    `(batch, num_frames)` mask of the encoder frames whose receptive field lies within the real samples.

    Applies the output-length formula of each convolution of the front end, `floor((length - kernel) / stride) + 1`,
    then of the adapter layers when the config has them, as wav2vec2, HuBERT and WavLM compute their frames."""
    lengths = sample_mask.sum(dim=-1)
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


class MERCrossAttention(nn.Module):
    """Multi-head attention whose queries come from one modality and keys/values from the other."""

    def __init__(self, config: MERConfig):
        super().__init__()
        self.num_heads = config.fusion_num_heads
        self.head_dim = config.fusion_hidden_size // config.fusion_num_heads
        self.dropout = config.fusion_dropout
        self.q_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.k_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.v_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)
        self.out_proj = nn.Linear(config.fusion_hidden_size, config.fusion_hidden_size)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = states.shape
        return states.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, L, d)

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self._split_heads(self.q_proj(queries))  # (B, h, Lq, d)
        k = self._split_heads(self.k_proj(context))  # (B, h, Lk, d)
        v = self._split_heads(self.v_proj(context))
        keep = context_mask[:, None, None, :]  # (B, 1, 1, Lk): padding is never attended to
        dropout = self.dropout if self.training else 0.0
        if output_attentions:
            scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5  # (B, h, Lq, Lk)
            weights = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim=-1)
            attended = F.dropout(weights, p=dropout, training=self.training) @ v
        else:
            weights = None
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)
        attended = attended.transpose(1, 2).flatten(2)  # (B, Lq, hidden)
        return self.out_proj(attended), weights


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
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(queries, context, context_mask, output_attentions)
        states = self.attention_norm(queries + self.dropout(attended))
        states = self.output_norm(states + self.dropout(self.feed_forward(states)))
        return states, weights


class MERFusion(nn.Module):
    """K fusion layers. Per layer, each stream that is a query stream attends to the other stream as it was before
    the layer, so in `bidirectional` mode both directions see the same inputs."""

    def __init__(self, config: MERConfig):
        super().__init__()
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
    ) -> tuple[torch.Tensor, torch.Tensor, tuple | None, tuple | None]:
        audio_attentions, text_attentions = [], []
        for index in range(len(self.audio_layers or self.text_layers)):
            new_audio, new_text = audio, text
            if self.audio_layers is not None:
                new_audio, weights = self.audio_layers[index](audio, text, text_mask, output_attentions)
                audio_attentions.append(weights)
            if self.text_layers is not None:
                new_text, weights = self.text_layers[index](text, audio, audio_mask, output_attentions)
                text_attentions.append(weights)
            audio, text = new_audio, new_text
        if not output_attentions:
            return audio, text, None, None
        return audio, text, tuple(audio_attentions) or None, tuple(text_attentions) or None


class MERPreTrainedModel(PreTrainedModel):
    config_class = MERConfig
    base_model_prefix = "mer"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only MER's own modules reach here: the encoders are PreTrainedModels and initialise themselves, and
        # pretrained encoder weights are never touched (see from_audio_text_pretrained).
        super()._init_weights(module)
        if isinstance(module, MERModel) and module.layer_weights is not None:
            module.layer_weights.fill_(1.0 / module.layer_weights.numel())


class MERModel(MERPreTrainedModel):
    """
    Multimodal emotion recognition from speech and its transcript.

    `audio encoder -> frames (B, T, Ha)` and `text encoder -> tokens (B, L, Ht)`, each projected to the fusion size;
    K cross-modal attention layers (padding masked); masked mean pooling of each stream; concatenation; classifier.
    In training, when labels are given, the auxiliary tasks reuse the encoder outputs of the batch: no second
    encoder pass.
    """

    def __init__(
        self,
        config: MERConfig,
        audio_encoder: PreTrainedModel | None = None,
        text_encoder: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        self.audio_encoder = audio_encoder if audio_encoder is not None else AutoModel.from_config(config.audio_config)
        self.text_encoder = text_encoder if text_encoder is not None else AutoModel.from_config(config.text_config)
        # BERT's pooler is never used (MER pools tokens itself); dropping it keeps DDP free of unused parameters.
        if getattr(self.text_encoder, "pooler", None) is not None:
            self.text_encoder.pooler = None
        # One source of truth: the sub-configs are the encoders' own configs.
        config.audio_config, config.text_config = self.audio_encoder.config, self.text_encoder.config

        hidden = config.fusion_hidden_size
        num_audio_layers = config.audio_config.num_hidden_layers + 1  # the CNN output and every transformer layer
        self.layer_weights = nn.Parameter(torch.ones(num_audio_layers)) if config.use_weighted_layer_sum else None
        self.audio_projection = nn.Linear(config.audio_config.hidden_size, hidden)
        self.text_projection = nn.Linear(config.text_config.hidden_size, hidden)
        self.fusion = MERFusion(config)
        self.dropout = nn.Dropout(config.fusion_dropout)
        self.classifier = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, config.num_labels))
        # Auxiliary heads: trained on mismatched pairs, never used at inference.
        self.cross_pair_audio_head = nn.Linear(2 * hidden, config.num_labels) if config.use_cross_pair_task else None
        self.cross_pair_text_head = nn.Linear(2 * hidden, config.num_labels) if config.use_cross_pair_task else None
        self.consistency_head = nn.Linear(2 * hidden, 1) if config.use_consistency_task else None

        if config.freeze_feature_encoder:
            self.freeze_feature_encoder()
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

        `audio_kwargs` / `text_kwargs` go to each encoder's `AutoModel.from_pretrained` (e.g. `revision`, `dtype`);
        `config_kwargs` to [`MERConfig`] (fusion size, K, heads, `id2label`, ...). The projections, fusion and heads
        are new and randomly initialised: the model needs fine-tuning before its predictions mean anything.
        """
        audio_encoder = AutoModel.from_pretrained(audio_model_name_or_path, **(audio_kwargs or {}))
        text_encoder = AutoModel.from_pretrained(text_model_name_or_path, **(text_kwargs or {}))
        # Copies: building the config must not reset the attention implementation the encoders were loaded with.
        config = MERConfig(
            audio_config=audio_encoder.config.to_dict(), text_config=text_encoder.config.to_dict(), **config_kwargs
        )
        model = cls(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
        new_modules = [name for name, _ in model.named_children() if name not in ("audio_encoder", "text_encoder")]
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        # register_for_auto_class keeps one auto class per class: name the classification entry explicitly, so
        # AutoModelForAudioClassification resolves to this class too.
        module = type(self).__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModel": f"{module}.{type(self).__name__}",
            "AutoModelForAudioClassification": f"{module}.{type(self).__name__}",
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def forward(
        self,
        input_values: torch.Tensor,
        input_ids: torch.Tensor,
        audio_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> MEROutput:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
                Normalised waveforms at the feature extractor's rate, zero-padded on the right ([`MERProcessor`]).
            input_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
                Transcript tokens, padded on the right.
            audio_attention_mask (`torch.LongTensor` of shape `(batch_size, num_samples)`, *optional*):
                1 for real samples, 0 for padding. Without it every sample counts as real.
            text_attention_mask (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                1 for real tokens, 0 for padding.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Segment ids for text encoders that use them.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, num_labels)`. Give them to get `loss`; in training mode they also switch on
                the auxiliary tasks.
            output_attentions (`bool`, *optional*, defaults to `False`):
                Return the cross-modal attention weights of every fusion layer.

        Raises:
            ValueError: if the audio and text batches differ in size, or an utterance is shorter than the audio
                encoder's receptive field (`config.audio_receptive_field` samples).
        """
        audio_states, audio_mask = self._encode_audio(input_values, audio_attention_mask)
        text_states, text_mask = self._encode_text(input_ids, text_attention_mask, token_type_ids, len(input_values))

        pooled, audio_attentions, text_attentions = self._fuse(
            audio_states, audio_mask, text_states, text_mask, output_attentions
        )
        logits = self.classifier(self.dropout(pooled))

        loss = classification_loss = aux_losses = None
        if labels is not None:
            classification_loss = F.cross_entropy(logits, labels)
            loss = classification_loss
            if self.training and len(labels) > 1:
                aux_losses = self._auxiliary_losses(audio_states, audio_mask, text_states, text_mask, pooled, labels)
                loss = loss + sum(self.config.aux_loss_weights[task] * value for task, value in aux_losses.items())
        return MEROutput(
            loss=loss,
            logits=logits,
            classification_loss=classification_loss,
            aux_losses=aux_losses,
            pooled_output=pooled,
            audio_frame_mask=audio_mask,
            audio_attentions=audio_attentions,
            text_attentions=text_attentions,
        )

    def _encode_audio(
        self, input_values: torch.Tensor, sample_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns projected frames `(B, T, H)` and their mask `(B, T)`."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}.")
        if sample_mask is None:
            sample_mask = torch.ones(input_values.shape, dtype=torch.long, device=input_values.device)
        lengths = sample_mask.sum(dim=-1)
        too_short = (lengths < self.config.audio_receptive_field).nonzero().flatten().tolist()
        if too_short:
            items = "; ".join(f"item {index} has {int(lengths[index])} samples" for index in too_short)
            raise ValueError(
                f"Audio too short for the audio encoder, which needs at least {self.config.audio_receptive_field} "
                f"samples for one frame: {items}."
            )
        encoder_mask = sample_mask if self.config.audio_encoder_takes_mask else None
        outputs = self.audio_encoder(
            input_values, attention_mask=encoder_mask, output_hidden_states=self.layer_weights is not None
        )
        if self.layer_weights is not None:
            layers = torch.stack(outputs.hidden_states, dim=0)  # (layers, B, T, Ha)
            weights = self.layer_weights.softmax(dim=0).to(layers.dtype)
            states = (weights[:, None, None, None] * layers).sum(dim=0)
        else:
            states = outputs.last_hidden_state  # (B, T, Ha)
        mask = audio_frame_mask(sample_mask, self.config.audio_config, states.shape[1])
        return self.audio_projection(states), mask

    def _encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        audio_batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns projected tokens `(B, L, H)` and their mask `(B, L)`."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}.")
        if len(input_ids) != audio_batch_size:
            raise ValueError(f"The batch has {audio_batch_size} audio items but {len(input_ids)} transcripts.")
        limit = getattr(self.config.text_config, "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] > limit:
            raise ValueError(
                f"Transcripts of {input_ids.shape[1]} tokens are longer than the text encoder's {limit} positions; "
                f"truncate them, e.g. processor(..., max_text_length={limit})."
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        states = self.text_encoder(input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return self.text_projection(states), attention_mask.bool()

    def _fuse(
        self,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """Fuses the two streams and pools them: `(B, 2H)`."""
        audio, text, audio_attentions, text_attentions = self.fusion(
            audio, audio_mask, text, text_mask, output_attentions
        )
        pooled = torch.cat([masked_mean(audio, audio_mask), masked_mean(text, text_mask)], dim=-1)
        return pooled, audio_attentions, text_attentions

    def _auxiliary_losses(
        self,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        matched_pooled: torch.Tensor,
        labels: torch.Tensor,
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
        mismatched_pooled, _, _ = self._fuse(audio, audio_mask, text[partner], text_mask[partner])
        mismatched_pooled = self.dropout(mismatched_pooled)
        losses = {}
        if self.config.use_cross_pair_task:
            losses["cross_pair"] = F.cross_entropy(
                self.cross_pair_audio_head(mismatched_pooled), labels
            ) + F.cross_entropy(self.cross_pair_text_head(mismatched_pooled), labels[partner])
        if self.config.use_consistency_task:
            pooled = torch.cat([self.dropout(matched_pooled), mismatched_pooled])  # (2B, 2H)
            same = torch.cat([torch.ones_like(labels), (labels == labels[partner]).long()]).to(pooled.dtype)
            losses["consistency"] = F.binary_cross_entropy_with_logits(self.consistency_head(pooled).squeeze(-1), same)
        return losses


def _random_derangement(size: int, device: torch.device) -> torch.Tensor:
    """A random permutation with no fixed point: a random cycle through all `size >= 2` items."""
    order = torch.randperm(size, device=device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner
