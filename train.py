#!/usr/bin/env python
"""Leave-one-session-out training and evaluation of MER with Accelerate.

    accelerate launch train.py --data_dir /path/IEMOCAP_full_release \
        --audio_model facebook/wav2vec2-base --text_model bert-base-uncased --output_dir runs/x

Each fold tests on one session, trains on the others, and picks its epoch by the UA of a speaker-stratified slice
of the training sessions: the test session never chooses a checkpoint, an epoch or a hyper-parameter. Rerunning the
same command (or passing --resume_from_checkpoint) continues a killed run: finished folds are kept, an unfinished
fold resumes from its last epoch checkpoint. CPU, one GPU, DDP and mixed precision come from `accelerate config`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import evaluate
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

from mer_tools.data import LengthGroupedSampler, MERCollator, UtteranceDataset
from mer_tools.training import (
    Arguments,
    atomic_directory,
    check_output_dir,
    claim_output_dir,
    load_folds,
    load_model_configs,
    parse_config_overrides,
    push_model_to_hub,
    restore_directory,
    save_confusion_matrix,
    summarise,
    write_model_card,
)
from modeling_mer import MERModel, MERProcessor

logger = logging.getLogger("train")
METRIC_PATH = Path(__file__).resolve().parent / "metrics" / "emotion_recognition"
OOM_ADVICE = (
    "Out of memory. Lower --batch_size (and raise --gradient_accumulation_steps to keep the effective batch), lower "
    "--max_audio_seconds, or pass --gradient_checkpointing."
)


def main() -> None:
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    args.check()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to,
        project_dir=args.output_dir,
        # Auxiliary heads sit out batches of one; BERT-style encoders may carry unused weights.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)

    # Everything that can be wrong with the inputs is found here, before any training.
    overrides = parse_config_overrides(args.config_overrides)
    load_model_configs(args.audio_model, args.text_model)
    with accelerator.main_process_first():
        data = load_folds(args)
    overrides = data.check_labels(overrides)
    folds = args.selected_folds(data.fold_names)
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        claim_output_dir(output_dir, args)
    accelerator.wait_for_everyone()
    processor = MERProcessor.from_audio_text_pretrained(args.audio_model, args.text_model)
    metric = evaluate.load(str(METRIC_PATH))
    if args.report_to:
        accelerator.init_trackers("mer", config={k: str(v) for k, v in asdict(args).items()})

    results = {}
    for fold in folds:
        train, validation, test = data.split(fold, args.validation_fraction, args.seed)
        results[fold] = run_fold(
            accelerator, args, output_dir / fold, processor, metric, data, train, validation, test, overrides
        )
    if args.final_fit:
        train, validation, _ = data.split(None, args.validation_fraction, args.seed)
        run_fold(accelerator, args, output_dir / "final", processor, metric, data, train, validation, None, overrides)

    if accelerator.is_main_process:
        summary = summarise(results, args, data, accelerator)
        (output_dir / "results.json").write_text(json.dumps(summary, indent=2))
        write_model_card(output_dir, summary, args)
        logger.info("\n%s", summary["table"])
        logger.info("Results: %s; models: %s/<fold>/model", output_dir / "results.json", output_dir)
        if args.push_to_hub:
            model_dir = output_dir / ("final" if args.final_fit else args.push_fold) / "model"
            url = push_model_to_hub(model_dir, output_dir / "README.md", args.hub_model_id, args.hub_private)
            logger.info("Pushed %s to %s", model_dir, url)
    accelerator.end_training()


def run_fold(accelerator, args, fold_dir, processor, metric, data, train, validation, test, overrides) -> dict:
    """Trains one fold (resuming if it was interrupted), then tests its best epoch. Returns the test metrics."""
    if (fold_dir / "metrics.json").exists():
        logger.info("%s is finished already: keeping its results.", fold_dir.name)
        return json.loads((fold_dir / "metrics.json").read_text())
    set_seed(args.seed)
    model = MERModel.from_audio_text_pretrained(args.audio_model, args.text_model, **overrides)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()

    # Without length grouping each mega-batch is a single batch: plain random batches.
    mega_batches = 50 if args.group_by_length else 1
    sampler = LengthGroupedSampler(
        data.durations_of(train), args.batch_size, seed=args.seed, mega_batches=mega_batches
    )
    train_loader = DataLoader(
        UtteranceDataset(train, *data.columns),
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=MERCollator(processor, max_audio_seconds=args.max_audio_seconds),
        num_workers=args.num_workers,
    )
    validation_loader = evaluation_loader(args, data, validation, processor)
    optimizer = torch.optim.AdamW(parameter_groups(model, args), weight_decay=args.weight_decay)
    # Counted before `prepare`, over all processes: the prepared scheduler steps once per process per update.
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.num_epochs
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(args.warmup_ratio * total_steps), num_training_steps=total_steps
    )
    model, optimizer, train_loader, validation_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, validation_loader, scheduler
    )

    checkpoint = fold_dir / "checkpoint"
    restore_directory(checkpoint)
    restore_directory(fold_dir / "model")
    state = {"epoch": 0, "best_ua": -1.0, "best_epoch": -1, "epochs_without_gain": 0, "history": []}
    if (checkpoint / "state.json").exists():
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "state.json").read_text())
        logger.info(
            "%s: resuming after epoch %d (best validation UA %.4f)", fold_dir.name, state["epoch"], state["best_ua"]
        )

    epochs = tqdm(
        range(state["epoch"], args.num_epochs),
        initial=state["epoch"],
        total=args.num_epochs,
        desc=f"{fold_dir.name} epochs",
        disable=not accelerator.is_local_main_process,
    )
    for epoch in epochs:
        if state["epochs_without_gain"] >= args.early_stopping_patience:
            break
        sampler.set_epoch(epoch)
        train_loss = train_epoch(
            accelerator, model, optimizer, scheduler, train_loader, f"{fold_dir.name} epoch {epoch + 1}"
        )
        scores = evaluate_loader(accelerator, model, validation_loader, metric, data.label_names)["metrics"]
        state["epoch"] = epoch + 1
        state["history"].append(
            {"epoch": epoch + 1, "train_loss": train_loss, "val_wa": scores["wa"], "val_ua": scores["ua"]}
        )
        if scores["ua"] > state["best_ua"]:
            state.update(best_ua=scores["ua"], best_epoch=epoch + 1, epochs_without_gain=0)
            save_model(accelerator, model, processor, fold_dir / "model")
        else:
            state["epochs_without_gain"] += 1
        epochs.set_postfix(loss=f"{train_loss:.3f}", val_ua=f"{scores['ua']:.3f}", best=f"{state['best_ua']:.3f}")
        logger.info(
            "%s epoch %d: train loss %.4f, validation WA %.4f UA %.4f",
            fold_dir.name,
            epoch + 1,
            train_loss,
            scores["wa"],
            scores["ua"],
        )
        accelerator.log(
            {f"{fold_dir.name}/train_loss": train_loss, f"{fold_dir.name}/val_ua": scores["ua"]}, step=epoch + 1
        )
        save_checkpoint(accelerator, checkpoint, state)

    # The epoch chosen on validation is the one tested.
    accelerator.unwrap_model(model).load_state_dict(load_file(fold_dir / "model" / "model.safetensors"))
    outcome = {key: state[key] for key in ("best_epoch", "best_ua", "history")}
    if test is not None:
        outcome.update(test_fold(accelerator, args, model, processor, metric, data, test, fold_dir))
    if accelerator.is_main_process:
        (fold_dir / "metrics.json").write_text(json.dumps(outcome, indent=2))
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return outcome


def test_fold(accelerator, args, model, processor, metric, data, test, fold_dir) -> dict:
    """Scores the test session with both modalities, then with each one masked (`--ablations`)."""
    outcome = {}
    for masked in [None, "text", "audio"] if args.ablations else [None]:
        loader = accelerator.prepare(evaluation_loader(args, data, test, processor, masked_modality=masked))
        result = evaluate_loader(accelerator, model, loader, metric, data.label_names)
        name = {None: "test", "text": "test_audio_only", "audio": "test_text_only"}[masked]
        outcome[name] = result["metrics"]
        if masked is None and accelerator.is_main_process:
            save_confusion_matrix(result["metrics"]["confusion_matrix"], data.label_names, fold_dir / "confusion.png")
            ids = data.ids_of(test)
            rows = [
                {"id": ids[i], "label": int(label), "prediction": int(prediction), "probabilities": probabilities}
                for i, label, prediction, probabilities in zip(
                    result["indices"], result["labels"], result["predictions"], result["probabilities"], strict=True
                )
            ]
            (fold_dir / "predictions.json").write_text(json.dumps(sorted(rows, key=lambda row: row["id"]), indent=1))
    return outcome


def evaluation_loader(args, data, dataset, processor, masked_modality=None) -> DataLoader:
    """Whole utterances, longest first (little padding), each exactly once."""
    order = np.argsort(data.durations_of(dataset))[::-1].tolist()
    return DataLoader(
        Subset(UtteranceDataset(dataset, *data.columns, with_index=True), order),
        batch_size=args.eval_batch_size,
        collate_fn=MERCollator(processor, masked_modality=masked_modality),
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


def train_epoch(accelerator, model, optimizer, scheduler, loader, description) -> float:
    model.train()
    losses = []
    steps = tqdm(loader, desc=description, leave=False, disable=not accelerator.is_local_main_process)
    for batch in steps:
        try:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        except torch.OutOfMemoryError as error:
            raise RuntimeError(OOM_ADVICE) from error
        losses.append(loss.detach())
        steps.set_postfix(loss=f"{loss.item():.3f}")
    return accelerator.gather(torch.stack(losses).mean()).mean().item()


@torch.no_grad()
def evaluate_loader(accelerator, model, loader, metric, label_names) -> dict:
    """Predictions gathered across processes (each utterance counted once) and their metrics."""
    model.eval()
    indices, labels, probabilities = [], [], []
    for batch in loader:
        index = batch.pop("indices")
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        index, label, probs = accelerator.gather_for_metrics((index, batch["labels"], logits.float().softmax(-1)))
        indices.append(index.cpu())
        labels.append(label.cpu())
        probabilities.append(probs.cpu())
    labels, probabilities = torch.cat(labels), torch.cat(probabilities)
    predictions = probabilities.argmax(-1)
    metrics = metric.compute(
        predictions=predictions.tolist(),
        references=labels.tolist(),
        num_labels=len(label_names),
        label_names=label_names,
    )
    return {
        "metrics": metrics,
        "indices": torch.cat(indices).tolist(),
        "labels": labels.tolist(),
        "predictions": predictions.tolist(),
        "probabilities": [[round(p, 6) for p in row] for row in probabilities.tolist()],
    }


def save_model(accelerator, model, processor, directory: Path) -> None:
    """`save_pretrained` of the model (remote code included) and processor, replacing `directory` atomically."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with atomic_directory(directory) as staging:
            accelerator.unwrap_model(model).save_pretrained(staging, state_dict=state_dict)
            processor.save_pretrained(staging)
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator, directory: Path, state: dict) -> None:
    """Model, optimizer, scheduler and RNG states plus the loop state; a kill mid-save leaves the last one usable."""
    staging = directory.with_name(directory.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left behind
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / "state.json").write_text(json.dumps(state))
        with atomic_directory(directory) as target:
            os.replace(staging, target)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
