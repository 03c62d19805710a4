"""The run directory: who may use it, directories replaced atomically, and each fold's state and checkpoint.

A fold's `checkpoint/` holds, as one directory replaced in one step, the Accelerate state of the last epoch (model,
optimizer, scheduler, random number generators), the loop state (`state.json`) and the best epoch's model
(`best_model/`). A kill at any point leaves the previous checkpoint or the new one, never a mix: the best model
is always the epoch `state.json` names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mer.training.arguments import Arguments, run_defining

__all__ = [
    "BEST_MODEL",
    "FoldState",
    "atomic_directory",
    "check_output_dir",
    "claim_output_dir",
    "load_checkpoint",
    "publish_best_model",
    "replace_directory",
    "restore_directory",
    "save_checkpoint",
]

BEST_MODEL = "best_model"
STATE_FILE = "state.json"


@dataclass
class FoldState:
    """Where a fold's training stands after `epoch` finished epochs."""

    epoch: int = 0
    best_ua: float = -1.0  # the validation UA of the best epoch
    best_epoch: int = 0  # 0 until an epoch has been validated
    epochs_without_gain: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch
    # The validation score that chose the best epoch (`val_score`: UA, or UA and CCC with dimensions); None in the
    # state of a run saved before it was recorded, which chose by UA alone.
    best_score: float | None = None

    def record_epoch(self, summary: dict) -> bool:
        """Adds a finished epoch (`summary` holds `val_ua`, or `val_score` when something else than UA chooses the
        epoch, or both); returns whether it is the best so far."""
        self.epoch += 1
        self.history.append({"epoch": self.epoch, **summary})
        value = summary.get("val_score", summary.get("val_ua"))
        improved = value > self.chosen_score
        if improved:  # a dimensions-only model has no UA: its best_ua stays unset (-1)
            self.best_score, self.best_ua, self.best_epoch = value, summary.get("val_ua", self.best_ua), self.epoch
            self.epochs_without_gain = 0
        else:
            self.epochs_without_gain += 1
        return improved

    @property
    def chosen_score(self) -> float:
        """The validation score of the best epoch as it was chosen: `best_score`, or UA for an older state."""
        return self.best_ua if self.best_score is None else self.best_score

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FoldState:
        return cls(**json.loads(text))


def save_checkpoint(accelerator, checkpoint: Path, state: FoldState, save_best: Callable[[Path], None] | None) -> None:
    """Writes the training state, `state` and the best model, then puts them in place of `checkpoint` in one step.

    `save_best(directory)` saves the model of this epoch when it is the new best (every process calls it, so that
    sharded weights can be gathered); `None` keeps the previous best model (hard links, no copy). Every process
    calls this function.
    """
    staging = checkpoint.with_name(checkpoint.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left behind
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if save_best is not None:
        save_best(staging / BEST_MODEL)
    if accelerator.is_main_process:
        if save_best is None and (checkpoint / BEST_MODEL).exists():
            shutil.copytree(checkpoint / BEST_MODEL, staging / BEST_MODEL, copy_function=os.link)
        (staging / STATE_FILE).write_text(state.to_json())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(staging, checkpoint)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, checkpoint: Path) -> FoldState | None:
    """Restores the Accelerate state of `checkpoint` and returns its loop state; None when there is no checkpoint."""
    restore_directory(checkpoint)
    if not (checkpoint / STATE_FILE).exists():
        return None
    accelerator.load_state(str(checkpoint))
    return FoldState.from_json((checkpoint / STATE_FILE).read_text())


def publish_best_model(checkpoint: Path, model_dir: Path) -> None:
    """Puts the checkpoint's best model (weights, config, remote code, processor) at `model_dir`, atomically."""
    with atomic_directory(model_dir) as staging:
        shutil.copytree(checkpoint / BEST_MODEL, staging, copy_function=os.link)


# What runs recorded before these settings existed did.
_BEFORE_TOWER_DEFAULTS = {"freeze_audio_epochs": 0, "spec_augment": False}


def check_output_dir(output_dir: Path, args: Arguments) -> None:
    """Accepts `output_dir` when it is new, empty, holds this same run (to resume) or is to be overwritten. Reads
    only, so every process of a distributed run can call it and fail alike.

    Raises:
        ValueError: it holds a different run (naming the arguments that differ), it holds something else, or
            --resume_from_checkpoint was given and there is nothing to resume.
    """
    if args.overwrite_output_dir:
        return
    record = output_dir / "run_args.json"
    if record.exists():
        # A run recorded before an argument existed ran with that argument's default (or, for one whose default now
        # depends on the audio tower, with what it did then).
        recorded = {**run_defining(Arguments()), **_BEFORE_TOWER_DEFAULTS, **json.loads(record.read_text())}
        ours = run_defining(args)
        theirs = {k: v for k, v in recorded.items() if k in ours}  # not what a newer version made run-neutral
        differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if differing:
            raise ValueError(
                f"{output_dir} holds a different run (it differs in {differing}). Choose another --output_dir, or "
                "pass --overwrite_output_dir to delete it."
            )
        return
    if args.resume_from_checkpoint:
        raise ValueError(f"--resume_from_checkpoint: {output_dir} holds no run to resume.")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty and holds no MER run. Choose another --output_dir.")


def claim_output_dir(output_dir: Path, args: Arguments) -> None:
    """Creates `output_dir` for this run (emptying it first with --overwrite_output_dir) and records the arguments
    that define the run. Main process only, after `check_output_dir`."""
    if args.overwrite_output_dir and output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = output_dir / "run_args.json"
    if not record.exists():
        record.write_text(json.dumps(run_defining(args), indent=2))


@contextlib.contextmanager
def atomic_directory(directory: Path) -> Iterator[Path]:
    """Yields a fresh staging path; on success it replaces `directory` with it (`replace_directory`)."""
    directory = Path(directory)
    restore_directory(directory)
    staging = directory.with_name(directory.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    replace_directory(staging, directory)


def replace_directory(new: Path, directory: Path) -> None:
    """Puts `new` in place of `directory`. A kill at any point leaves the old or the new directory in place, or the
    old one under `.old`, which `restore_directory` puts back."""
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def restore_directory(directory: Path) -> None:
    """Puts back a directory left under `.old` by a kill between the two renames of `replace_directory`."""
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.exists():
        old.rename(directory)
