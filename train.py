#!/usr/bin/env python
"""Leave-one-fold-out training and evaluation of MER with Accelerate.

    accelerate launch train.py --data_dir /path/IEMOCAP_full_release \
        --audio_model facebook/wav2vec2-base --text_model bert-base-uncased --output_dir runs/x
    accelerate launch train.py --corpus ravdess=/data/RAVDESS --corpus emodb=/data/emodb [--protocol
        leave-one-corpus-out] --audio_model openai/whisper-base --output_dir runs/y

The evaluation protocol (mer.training.protocol): each fold (an IEMOCAP session) is tested once by a model trained on
the other folds; the epoch is chosen on validation speakers held out whole from the training folds; no speaker is in
two of train / validation / test. Public corpora by name (mer.training.corpora) are pooled within each corpus's
standard folds or left out one corpus at a time, and scored per corpus too. Scores are averaged over folds and pooled
over them; `--seeds 1 2 3` runs every fold once per seed. `--dimensions arousal,valence` also trains and scores
dimensions of emotion (CCC, r, MAE) from the corpus's ratings on [0, 1]. `--transcripts asr` trains and tests on
speech recognition's transcripts, `both` trains on gold ones and tests on both. Rerunning the same command (or passing
--resume_from_checkpoint) continues a killed run exactly: finished folds (of each seed) are kept, an unfinished fold
resumes from its last epoch with the batch order, random state and learning rate it would have had. CPU, one GPU,
DDP and mixed precision come from `accelerate config`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import evaluate
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

from mer.training.arguments import Arguments, load_model_configs, parse_config_overrides
from mer.training.baseline import FrozenFeatures, probe_fold
from mer.training.corpora import CORPORA
from mer.training.data import LengthGroupedSampler, MERCollator, UtteranceDataset, evaluation_batches
from mer.training.dimensions import score_dimensions, selection_score, with_dimensions
from mer.training.fold_export import export_folds
from mer.training.folds import Corpus, FoldSplit
from mer.training.protocol import describe_protocol, load_corpus, plan_folds, predicted_classes
from mer.training.reporting import (
    evaluation_conditions,
    json_text,
    push_model_to_hub,
    record_evaluation_in_config,
    save_confusion_matrix,
    summarise,
    write_model_card,
)
from mer.training.run_dir import (
    BEST_MODEL,
    FoldState,
    check_output_dir,
    claim_output_dir,
    load_checkpoint,
    publish_best_model,
    save_checkpoint,
)
from mer.training.speech_recognition import SpeechRecognizer
from mer.training.training_defaults import resolve_training_defaults
from mer.training.transcripts import ASR_TEXT_COLUMN, transcribe_corpus
from modeling_mer import MERConfig, MERModel, MERProcessor
from modeling_mer.pipeline_mer import save_with_pipeline

logger = logging.getLogger("train")
METRIC_PATH = Path(__file__).resolve().parent / "metrics" / "emotion_recognition"
OOM_ADVICE = (
    "Out of memory. Lower --batch_size (and raise --gradient_accumulation_steps to keep the effective batch), lower "
    "--max_audio_seconds, or pass --gradient_checkpointing."
)


def main() -> None:
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    with refusal_as_message():
        args.check()
    # Training batches are full and every head runs on each of them, so the graph is the same at every step; only
    # LayerDrop (skipping encoder layers at random) and a frozen start (`--freeze_audio_epochs`) leave parameters
    # without gradients. Read when the model is prepared, after the training defaults are known.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=args.audio_layerdrop > 0)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to,
        project_dir=args.output_dir,
        kwargs_handlers=[ddp],
    )
    configure_logging(accelerator.is_main_process)

    if args.export_folds:  # the folds only: no model, no training
        if accelerator.is_main_process:
            with refusal_as_message():
                corpus = load_corpus(args)
            export_folds(corpus, args.export_folds, corpus_source(args))
            logger.info("Wrote the %d folds as EmoBox-style JSONL: %s", len(corpus.fold_names), args.export_folds)
        return

    # Everything that can be wrong with the inputs is found here, before any training.
    with refusal_as_message():
        overrides = parse_config_overrides(args.config_overrides)
        resolve_training_defaults(args, overrides, load_model_configs(args.audio_model, args.text_model))
        args.check()  # the settings the defaults filled in, together with the given ones
        with accelerator.main_process_first():
            corpus = load_corpus(args)
        overrides = with_dimensions(corpus.check_labels(overrides), corpus.dimensions)
        if args.dimensions_only:  # no classes: no classifier, no auxiliary tasks
            overrides = {**overrides, "id2label": {}}
        check_batch_size(args, MERConfig(**overrides))
        plans = plan_seeds(corpus, args)
        protocol = describe_protocol(args, corpus, plans[args.seed_list[0]])
        output_dir = Path(args.output_dir)
        check_output_dir(output_dir, args)
    ddp.find_unused_parameters |= args.freeze_audio_epochs > 0
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        claim_output_dir(output_dir, args)
        log_to_file(output_dir / "train.log")
    accelerator.wait_for_everyone()
    logger.info("%s", protocol)
    asr = None
    if args.transcripts != "gold":
        asr = add_asr_transcripts(accelerator, args, corpus)
        plans = plan_seeds(corpus, args)  # the same splits, now holding speech recognition's transcripts
    if accelerator.is_main_process:
        export_folds(corpus, output_dir / "folds", corpus_source(args))
    processor = MERProcessor.from_audio_text_pretrained(args.audio_model, args.text_model)
    metric = evaluate.load(str(METRIC_PATH))
    if args.report_to:
        accelerator.init_trackers("mer", config={k: str(v) for k, v in vars(args).items()})

    features = None
    if args.baseline != "none":  # the towers as downloaded: one pass over the corpus serves every fold and seed
        towers = partial(quietly_built, args.audio_model, args.text_model, overrides)
        features = FrozenFeatures(
            accelerator,
            corpus,
            towers,
            lambda dataset, config: whole_utterance_loader(args, corpus, dataset, processor, config),
        )

    results = {}
    for seed, plan in plans.items():
        seeded, seed_dir = replace(args, seed=seed), seed_directory(output_dir, args, seed)
        results[seed] = {
            split.name: run_fold(
                accelerator, seeded, corpus, split, seed_dir / split.name, processor, metric, overrides, features
            )
            for split in plan
        }

    if accelerator.is_main_process:
        summary = summarise(results, args, corpus, protocol, accelerator, metric, asr)
        (output_dir / "results.json").write_text(json_text(summary))
        if args.baseline != "probe-only":  # a run of the probe alone has no model to describe
            write_model_card(output_dir, summary, args)
        logger.info("%s\n\n%s", protocol, summary["table"])
        models = "" if args.baseline == "probe-only" else f"; models: {seed_directory(output_dir, args)}/<fold>/model"
        logger.info("Results: %s%s", output_dir / "results.json", models)
        if args.push_to_hub:
            fold = plans[args.seed_list[0]][-1].name if args.final_fit else args.push_fold
            model_dir = seed_directory(output_dir, args) / fold / "model"
            url = push_model_to_hub(model_dir, output_dir / "README.md", args.hub_model_id, args.hub_private)
            logger.info("Pushed %s to %s", model_dir, url)
    accelerator.end_training()


def corpus_source(args) -> str:
    """What the corpus was read from: the directory, the dataset, or the corpora by name."""
    return args.data_dir or args.dataset or " ".join(args.corpus)


@contextmanager
def refusal_as_message():
    """Inputs refused before any work (a wrong folder, an incomplete corpus, a bad flag) reach the user as one message
    naming what is wrong, not as a traceback through the libraries: `train.py: error: ...`, exit status 2."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        print(f"train.py: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def plan_seeds(corpus: Corpus, args) -> dict[int, list[FoldSplit]]:
    """The evaluation protocol for every seed: folds, validation splits (seeded), speaker checks."""
    return {seed: plan_folds(corpus, replace(args, seed=seed)) for seed in args.seed_list}


def seed_directory(output_dir: Path, args, seed: int | None = None) -> Path:
    """Where a seed's folds go: `output_dir` itself for a run of one seed, `output_dir/seed<N>` with several (by
    default the first seed's)."""
    if len(args.seed_list) == 1:
        return output_dir
    return output_dir / f"seed{args.seed_list[0] if seed is None else seed}"


def add_asr_transcripts(accelerator, args, corpus: Corpus) -> dict:
    """Gives every fold speech recognition's transcripts (from the cache, or transcribed now by every process, each
    its share) and, for `--transcripts asr`, makes them the ones the model reads. Returns the report for
    results.json: the model, the word error rate per fold, the empty transcripts, the time the pass took."""
    try:
        recognizer = SpeechRecognizer(args.asr_model, args.asr_backend, device=accelerator.device)
    except ValueError as error:  # a backend that is not installed, or that cannot read the model
        raise ValueError(f"--asr_model {args.asr_model} (--asr_backend {args.asr_backend}): {error}") from error
    named, transcripts = transcribe_corpus(
        corpus.named_parts(),
        corpus.columns,
        recognizer,
        corpus.name,
        rank=accelerator.process_index,
        num_processes=accelerator.num_processes,
        barrier=accelerator.wait_for_everyone,
    )
    corpus.replace_parts(named)
    if args.transcripts == "asr":
        corpus.columns = (corpus.columns[0], ASR_TEXT_COLUMN, corpus.columns[2])
    report = transcripts.report()
    logger.info(
        "Speech recognition (%s): word error rate %.1f%% against the gold transcripts (%s); %d utterance(s) "
        "transcribed in %.0f s, the rest from %s",
        report["model"], 100 * report["word_error_rate_all_folds"],
        ", ".join(f"{fold} {100 * wer:.1f}%" for fold, wer in report["word_error_rate"].items()),
        report["transcribed_by_this_run"], report["transcription_seconds"], report["cache"],
    )  # fmt: skip
    return report


@dataclass
class FoldTraining:
    """What one fold trains with, prepared by Accelerate."""

    model: MERModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    training: DataLoader
    validation: DataLoader
    scheduler_steps: int  # the schedule's length: it reaches 0 at the last update of the last epoch
    audio_parameters: list[torch.nn.Parameter]  # the audio tower's trainable ones, frozen in the first epochs


def run_fold(
    accelerator, args, corpus: Corpus, split: FoldSplit, fold_dir: Path, processor, metric, overrides, features
) -> dict:
    """MER's record of the fold (`train_and_test_fold`; none with `--baseline probe-only`) and, given the frozen
    towers' `features`, the probe's beside it (`probe_fold_record`)."""
    record = (
        {}
        if args.baseline == "probe-only"
        else train_and_test_fold(accelerator, args, corpus, split, fold_dir, processor, metric, overrides)
    )
    if features is not None and split.test is not None:
        probe = probe_fold_record(accelerator, corpus, split, fold_dir, features, metric)
        for part, scores in probe.pop("corpora", {}).items():
            record.setdefault("corpora", {}).setdefault(part, {}).update(scores)
        record.update(probe)
    return record


def train_and_test_fold(
    accelerator, args, corpus: Corpus, split: FoldSplit, fold_dir: Path, processor, metric, overrides
) -> dict:
    """Trains one fold (resuming if it was interrupted), then tests its best epoch. Returns the fold's record."""
    if (fold_dir / "metrics.json").exists():
        logger.info("%s is finished already: keeping its results.", split.name)
        return json.loads((fold_dir / "metrics.json").read_text())
    fold = prepare_fold(accelerator, args, corpus, split, processor, overrides)
    checkpoint = fold_dir / "checkpoint"
    state = train_fold(accelerator, args, fold, split.name, checkpoint, processor, metric, corpus)

    # The epoch chosen on validation is the one tested, and the one published as the fold's model.
    best = load_file(checkpoint / BEST_MODEL / "model.safetensors")
    accelerator.unwrap_model(fold.model).load_state_dict(best)
    if accelerator.is_main_process:
        publish_best_model(checkpoint, fold_dir / "model")
    record = {
        "best_epoch": state.best_epoch,
        **({"best_ua": state.best_ua} if predicted_classes(args, corpus) else {}),
        **({"best_score": state.best_score} if corpus.dimensions else {}),
        "history": state.history,
        "stopped_early": len(state.history) < args.num_epochs,
        "validation_speakers": split.validation_speakers,
        "train_size": len(split.train),
        "validation_size": len(split.validation),
        "planned_scheduler_steps": fold.scheduler_steps,
    }
    if split.test is not None:
        record.update(score_test_fold(accelerator, args, fold.model, processor, metric, corpus, split, fold_dir))
    if accelerator.is_main_process:
        (fold_dir / "metrics.json").write_text(json_text(record))
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return record


def probe_fold_record(accelerator, corpus: Corpus, split: FoldSplit, fold_dir: Path, features, metric) -> dict:
    """The frozen-feature probe's scores on the fold's test utterances (per corpus too, when several are pooled),
    with the C each condition chose on validation (`probe_settings`). Kept in the fold's probe.json: a rerun reuses
    it, and a rerun with the probe adds it to folds that finished without it."""
    path = fold_dir / "probe.json"
    if path.exists():
        return json.loads(path.read_text())
    with_text = any(str(text).strip() for text in split.train[corpus.columns[1]])
    record, by_corpus, settings = {}, {}, {}
    for name, probe in probe_fold(features, split, corpus, with_text).items():
        record[name] = score(probe["rows"], metric, corpus.label_names)
        settings[name] = {"C": probe["C"], "validation_ua": probe["validation_ua"]}
        for part, rows in predictions_by_corpus(corpus, split.test, probe["rows"]).items():
            by_corpus.setdefault(part, {})[name] = score(rows, metric, corpus.label_names)
    record["probe_settings"] = settings
    if by_corpus:
        record["corpora"] = by_corpus
    if accelerator.is_main_process:
        fold_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json_text(record))
    accelerator.wait_for_everyone()
    return record


def quietly_built(audio_model: str, text_model: str, overrides: dict) -> MERModel:
    """A MER model around the pretrained towers, without the warning that its new modules need fine-tuning: the
    probe reads only the towers."""
    modeling_logger = logging.getLogger(MERModel.__module__)
    level = modeling_logger.level
    modeling_logger.setLevel(logging.ERROR)
    try:
        return MERModel.from_audio_text_pretrained(audio_model, text_model, **overrides)
    finally:
        modeling_logger.setLevel(level)


def prepare_fold(accelerator, args, corpus: Corpus, split: FoldSplit, processor, overrides) -> FoldTraining:
    """A fresh model around the pretrained encoders, the fold's loaders, the optimizer and the schedule."""
    set_seed(args.seed)
    model = MERModel.from_audio_text_pretrained(args.audio_model, args.text_model, **overrides)
    audio_config = model.config.audio_config  # the encoder reads these at every step
    if hasattr(audio_config, "layerdrop"):
        audio_config.layerdrop = args.audio_layerdrop
    if args.spec_augment is not None:
        audio_config.apply_spec_augment = args.spec_augment
    for name in ("mask_time_prob", "mask_feature_prob"):
        if getattr(args, name) is not None:
            setattr(audio_config, name, getattr(args, name))
    audio_parameters = [parameter for parameter in model.audio_encoder.parameters() if parameter.requires_grad]
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # Without length grouping each mega-batch is a single batch: plain random batches.
    sampler = LengthGroupedSampler(
        corpus.durations_of(split.train),
        args.batch_size,
        seed=args.seed,
        mega_batches=50 if args.group_by_length else 1,
    )
    training = DataLoader(
        UtteranceDataset(split.train, *corpus.columns, dimension_columns=corpus.dimensions),
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=True,  # every training batch is full: the auxiliary tasks need two utterances, DDP a fixed graph
        collate_fn=MERCollator(
            processor,
            max_audio_seconds=args.max_audio_seconds,
            window_seconds=model.config.audio_max_seconds,
            modality_dropout=model.config.modality_dropout,
            with_labels=bool(predicted_classes(args, corpus)),  # a dimensions-only model learns from the ratings alone
        ),
        num_workers=args.num_workers,
    )
    validation = whole_utterance_loader(args, corpus, split.validation, processor, model.config)
    optimizer = torch.optim.AdamW(parameter_groups(model, args), weight_decay=args.weight_decay)
    model, prepared_optimizer, training, validation = accelerator.prepare(model, optimizer, training, validation)
    # Counted from the prepared loader (per process); the prepared scheduler steps once per process at every update.
    scheduler_steps = math.ceil(len(training) / args.gradient_accumulation_steps) * args.num_epochs
    scheduler_steps *= accelerator.num_processes
    warmup_steps = int(args.warmup_ratio * scheduler_steps)
    scheduler = accelerator.prepare(get_scheduler("linear", optimizer, warmup_steps, scheduler_steps))
    return FoldTraining(model, prepared_optimizer, scheduler, training, validation, scheduler_steps, audio_parameters)


def train_fold(accelerator, args, fold: FoldTraining, name, checkpoint: Path, processor, metric, corpus) -> FoldState:
    """Epochs until `--num_epochs` or early stopping, each followed by validation and a checkpoint; continues after
    the last finished epoch of an interrupted run."""
    state = load_checkpoint(accelerator, checkpoint) or FoldState()
    label_names = predicted_classes(args, corpus)
    chosen_by = "UA" if not corpus.dimensions else "score (mean of UA and CCC)" if label_names else "mean CCC"
    if state.epoch:
        logger.info("%s: resuming after epoch %d (best validation %s %.4f)", name, state.epoch, chosen_by,
                    state.chosen_score)  # fmt: skip
    epochs = tqdm(
        range(state.epoch, args.num_epochs),
        initial=state.epoch,
        total=args.num_epochs,
        desc=f"{name} epochs",
        disable=not accelerator.is_local_main_process,
    )
    for epoch in epochs:
        if state.epochs_without_gain >= args.early_stopping_patience:
            waited = state.epochs_without_gain
            logger.info(
                "%s: early stopping after epoch %d: validation %s has not improved for %d epoch%s (best %.4f, "
                "epoch %d; --early_stopping_patience %d).",
                name, state.epoch, chosen_by, waited, "" if waited == 1 else "s",
                state.chosen_score, state.best_epoch,
                args.early_stopping_patience,
            )  # fmt: skip
            break
        fold.training.set_epoch(epoch)  # the prepared loader seeds its sampler with this: the same order on resume
        audio_learning = set_audio_tower_learning(fold, epoch >= args.freeze_audio_epochs)
        started = time.perf_counter()
        train_loss = train_epoch(accelerator, fold, f"{name} epoch {epoch + 1}")
        predictions = predict(accelerator, fold.model, fold.validation)
        scores = score(predictions, metric, label_names, corpus.dimensions)
        cccs = {f"val_{dimension}_ccc": value["ccc"] for dimension, value in scores.get("dimensions", {}).items()}
        improved = state.record_epoch(
            {
                "train_loss": train_loss,
                "audio_tower_learning": audio_learning,
                **({"val_wa": scores["wa"], "val_ua": scores["ua"]} if label_names else {}),
                **cccs,
                "val_score": selection_score(scores),
                "learning_rates": fold.scheduler.get_last_lr(),
                "scheduler_steps": fold.scheduler.scheduler.last_epoch,
                "seconds": time.perf_counter() - started,  # training and validation, on this process
            }
        )
        save_best = partial(save_model, accelerator, fold.model, processor) if improved else None
        save_checkpoint(accelerator, checkpoint, state, save_best)
        chosen = state.history[-1]["val_score"]
        epochs.set_postfix(loss=f"{train_loss:.3f}", val=f"{chosen:.3f}", best=f"{state.chosen_score:.3f}")
        logger.info(
            "%s epoch %d: train loss %.4f, validation %s",
            name, state.epoch, train_loss,
            ", ".join([*([f"WA {scores['wa']:.4f} UA {scores['ua']:.4f}"] if label_names else []),
                       *(f"{key.removeprefix('val_')} {value:.4f}" for key, value in cccs.items())]),
        )  # fmt: skip
        accelerator.log({f"{name}/train_loss": train_loss, f"{name}/val_score": chosen}, step=state.epoch)
    return state


def set_audio_tower_learning(fold: FoldTraining, learning: bool) -> bool:
    """Lets the audio tower's trainable parameters learn, or not (`--freeze_audio_epochs`): without a gradient,
    AdamW leaves a parameter alone and DDP skips it. Returns whether the tower learns (never, when the config
    freezes all of it)."""
    for parameter in fold.audio_parameters:
        parameter.requires_grad_(learning)
    return learning and bool(fold.audio_parameters)


def score_test_fold(accelerator, args, model, processor, metric, corpus, split, fold_dir) -> dict:
    """Scores the test fold with both modalities, then with each one alone (`--ablations`). The scores also go into
    the published model's config (`evaluation`), so whoever uses the model knows what each condition is worth."""
    outcome, by_corpus = {}, {}
    conditions = evaluation_conditions(args.transcripts, args.ablations)
    model_config = accelerator.unwrap_model(model).config
    label_names = predicted_classes(args, corpus)
    for name, condition in conditions.items():
        text_column = ASR_TEXT_COLUMN if condition.transcripts == "asr" else args.text_column
        loader = accelerator.prepare(
            whole_utterance_loader(
                args, corpus, split.test, processor, model_config, condition.keep_only, text_column=text_column
            )
        )
        predictions = predict(accelerator, model, loader)
        outcome[name] = score(predictions, metric, label_names, corpus.dimensions)
        for part, rows in predictions_by_corpus(corpus, split.test, predictions).items():
            by_corpus.setdefault(part, {})[name] = score(rows, metric, label_names, corpus.dimensions)
        if condition.keep_only is None and accelerator.is_main_process:
            suffix = name.removeprefix("test")  # "" for the transcripts trained on, "_asr" for speech recognition's
            if label_names:
                save_confusion_matrix(
                    outcome[name]["confusion_matrix"], label_names, fold_dir / f"confusion{suffix}.png"
                )
            ids = corpus.ids_of(split.test)
            rows = [{"id": ids[row.pop("index")], **row} for row in predictions]
            rows.sort(key=lambda row: row["id"])
            (fold_dir / f"predictions{suffix}.json").write_text(json_text(rows, indent=1))
    if accelerator.is_main_process:
        trained_on = [min(seconds, args.max_audio_seconds) for seconds in corpus.durations_of(split.train)]
        record_evaluation_in_config(
            fold_dir / "model",
            outcome,
            f"fold {split.name} of {corpus.name}",
            trained_on,
            {name: str(condition) for name, condition in conditions.items()},
            training_description(corpus, split),
            by_corpus,
        )
    if by_corpus:
        outcome["corpora"] = by_corpus
    return outcome


def training_description(corpus: Corpus, split: FoldSplit) -> str:
    """What a fold's model learnt from, for its config and the Space: per corpus, the utterances and speakers of the
    training split, and the classes (e.g. "EmoDB: 270 utterances, 8 speakers; RAVDESS: ...; classes: ...")."""
    train = split.train
    groups = train[corpus.corpus_column] if corpus.corpus_column else [corpus.name] * len(train)
    speakers = train[corpus.speaker_column] if corpus.speaker_column else [None] * len(train)
    utterances, seen = Counter(groups), defaultdict(set)
    for group, speaker in zip(groups, speakers, strict=True):
        seen[group].add(speaker)
    parts = []
    for group, count in utterances.items():
        title = CORPORA[group].title if group in CORPORA and corpus.corpus_column else group
        speakers_seen = f", {len(seen[group])} speakers" if None not in seen[group] else ""
        parts.append(f"{title}: {count} utterances{speakers_seen}")
    return "; ".join(parts) + f"; classes: {', '.join(corpus.label_names)}"


def predictions_by_corpus(corpus: Corpus, test, predictions: list[dict]) -> dict[str, list[dict]]:
    """The predictions of each corpus of a pooled test set (nothing for a single corpus)."""
    if corpus.corpus_column is None or len(corpus.parts) < 2:
        return {}
    names = test[corpus.corpus_column]
    grouped: dict[str, list[dict]] = {}
    for row in predictions:
        grouped.setdefault(names[row["index"]], []).append(row)
    return dict(sorted(grouped.items()))


def whole_utterance_loader(
    args, corpus, dataset, processor, config: MERConfig, keep_only=None, text_column: str | None = None
) -> DataLoader:
    """Whole utterances, each exactly once, with the transcripts of `text_column` (default: the corpus's). For audio
    encoders that are not given the sample mask, a batch holds only utterances of one length: padding would reach
    their group norm and self-attention and change predictions. Utterances longer than the audio encoder's window
    (Whisper: 30 s) are evaluated on their first window."""
    audio_column, _, label_column = corpus.columns
    durations = corpus.durations_of(dataset)
    window = config.audio_max_seconds
    longer = sum(duration > window for duration in durations) if window is not None else 0
    if longer:
        logger.warning(
            f"{longer} of {len(durations)} utterances are longer than the audio encoder's {window:.0f} s window: "
            f"they are evaluated on their first {window:.0f} s."
        )
    batches = evaluation_batches(
        durations, args.eval_batch_size, equal_lengths_only=not config.audio_encoder_takes_mask
    )
    return DataLoader(
        UtteranceDataset(
            dataset,
            audio_column,
            text_column or corpus.columns[1],
            label_column,
            with_index=True,
            dimension_columns=corpus.dimensions,
        ),
        batch_sampler=batches,
        collate_fn=MERCollator(processor, window_seconds=window, keep_only=keep_only),
        num_workers=args.num_workers,
    )


def parameter_groups(model: MERModel, args: Arguments) -> list[dict]:
    """Encoders learn at `encoder_learning_rate`, fusion and heads at `learning_rate`; no decay on biases and norms."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        encoder = name.startswith(("audio_encoder.", "text_encoder."))
        decay = parameter.dim() > 1
        key = (encoder, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": args.encoder_learning_rate if encoder else args.learning_rate,
                "weight_decay": args.weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(parameter)
    return list(groups.values())


# Steps between two readings of the loss for the progress bar: reading it (`.item()`) waits for the device.
LOSS_DISPLAY_STEPS = 10


def train_epoch(accelerator, fold: FoldTraining, description: str) -> float:
    """One pass over the training loader; returns the mean loss over all processes. The losses stay on the device
    until the end of the epoch: the progress bar reads the latest one every `LOSS_DISPLAY_STEPS` steps only."""
    fold.model.train()
    losses = []
    steps = tqdm(fold.training, desc=description, leave=False, disable=not accelerator.is_local_main_process)
    for step, batch in enumerate(steps):
        try:
            with accelerator.accumulate(fold.model):
                loss = fold.model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(fold.model.parameters(), 1.0)
                fold.optimizer.step()
                fold.scheduler.step()
                fold.optimizer.zero_grad()
        except torch.OutOfMemoryError as error:
            raise RuntimeError(OOM_ADVICE) from error
        losses.append(loss.detach())
        if step % LOSS_DISPLAY_STEPS == 0 and not steps.disable:
            steps.set_postfix(loss=f"{loss.item():.3f}")
    return accelerator.gather(torch.stack(losses).mean()).mean().item()


@torch.no_grad()
def predict(accelerator, model, loader) -> list[dict]:
    """`{"index", "label", "prediction", "probabilities"}` (the last two not for a dimensions-only model; and, for
    a model with dimensions, the predicted `dimensions` and rated `dimension_labels`) for every utterance of the
    loader, gathered from all processes, in dataset order; an utterance that a process saw twice (to even out the
    batches) is counted once."""
    model.eval()
    rows = []
    for batch in loader:
        indices, labels = batch.pop("indices").tolist(), batch.pop("labels").tolist()
        rated = batch.pop("dimension_labels", None)
        outputs = model(**batch)
        probabilities = None if outputs.logits is None else outputs.logits.float().softmax(-1).cpu()
        for position, (index, label) in enumerate(zip(indices, labels, strict=True)):
            rows.append({"index": index, "label": label})
            if probabilities is not None:
                row = probabilities[position]
                rows[-1] |= {"prediction": int(row.argmax()), "probabilities": [round(p, 6) for p in row.tolist()]}
            if rated is not None:  # the ratings (None: unrated) and the predictions, on [0, 1]
                ratings = rated[position].tolist()
                rows[-1]["dimension_labels"] = [None if math.isnan(v) else round(v, 6) for v in ratings]
                rows[-1]["dimensions"] = [round(v, 6) for v in outputs.dimensions[position].float().tolist()]
    # Not `gather_for_metrics`: it trims what Accelerate repeated to even out the processes by counting samples off
    # the end, which holds for batches of one size. Evaluation batches are grouped by length (for encoders that see
    # padding, by exact length) and differ in size, and the repeats are whole batches; so rows carry their dataset
    # index, and each index is kept once.
    unique = {row["index"]: row for row in reversed(gather_object(rows))}
    return [unique[index] for index in sorted(unique)]


def score(predictions: list[dict], metric, label_names: list[str], dimensions: list[str] = ()) -> dict:
    """The classes' scores (`metric`; with no `label_names`, a dimensions-only model's, only `num_examples`), and
    under `dimensions` each dimension's (`score_dimensions`)."""
    scores = {"num_examples": len(predictions)}
    if label_names:
        scores = metric.compute(
            predictions=[row["prediction"] for row in predictions],
            references=[row["label"] for row in predictions],
            num_labels=len(label_names),
            label_names=label_names,
        )
    if dimensions:
        scores["dimensions"] = score_dimensions(predictions, list(dimensions))
    return scores


def save_model(accelerator, model, processor, directory: Path) -> None:
    """`save_pretrained` of the model (remote code included) and processor into `directory`. Every process calls it:
    the state dict is gathered from all of them (FSDP, DeepSpeed); the main process writes."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        save_with_pipeline(accelerator.unwrap_model(model), processor, directory, state_dict=state_dict)
    accelerator.wait_for_everyone()


def check_batch_size(args: Arguments, config: MERConfig) -> None:
    if (config.use_cross_pair_task or config.use_consistency_task) and args.batch_size < 2:
        raise ValueError(
            "--batch_size 1: the auxiliary tasks pair each utterance with another one of its batch. Use a batch of "
            "at least 2 (with --gradient_accumulation_steps to save memory), or switch the tasks off with "
            "--config_overrides use_cross_pair_task=false,use_consistency_task=false."
        )


def configure_logging(is_main_process: bool) -> None:
    """The console shows train.py's own progress and every warning; libraries' information (checkpoint file lists,
    for one) goes only to the run's log file (`log_to_file`)."""
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if is_main_process else logging.WARNING)
    console.addFilter(lambda record: record.name == logger.name or record.levelno >= logging.WARNING)
    console.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console], force=True)


def log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


if __name__ == "__main__":
    main()
