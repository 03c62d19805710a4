"""The run directory's checkpoint: the training state, the loop state and the best model change together or not at
all, whatever moment a run is killed at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mer.training.run_dir import (
    BEST_MODEL,
    FoldState,
    load_checkpoint,
    publish_best_model,
    replace_directory,
    restore_directory,
    save_checkpoint,
)


class Killed(Exception):
    """Stands in for SIGKILL at a chosen moment."""


class OneProcess:
    """The part of `accelerate.Accelerator` the checkpoint uses, for one process, writing plain files."""

    is_main_process = True

    def __init__(self, epoch_marker: str = ""):
        self.epoch_marker = epoch_marker
        self.loaded_from = None

    def wait_for_everyone(self):
        pass

    def save_state(self, directory: str):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "optimizer.bin").write_text(self.epoch_marker)

    def load_state(self, directory: str):
        self.loaded_from = (Path(directory) / "optimizer.bin").read_text()


def save_best_as(marker: str, kill: bool = False):
    def save(directory: Path):
        directory.mkdir()
        (directory / "model.safetensors").write_text(marker)
        if kill:
            raise Killed

    return save


def finish_epoch(checkpoint: Path, state: FoldState, val_ua: float, kill_in_best: bool = False) -> bool:
    improved = state.record_epoch({"train_loss": 1.0, "val_ua": val_ua})
    marker = f"epoch {state.epoch}"
    save_best = save_best_as(marker, kill=kill_in_best) if improved else None
    save_checkpoint(OneProcess(marker), checkpoint, state, save_best)
    return improved


def read(checkpoint: Path) -> tuple[dict, str, str]:
    state = json.loads((checkpoint / "state.json").read_text())
    return (
        state,
        (checkpoint / "optimizer.bin").read_text(),
        (checkpoint / BEST_MODEL / "model.safetensors").read_text(),
    )


def test_the_best_model_is_always_the_epoch_the_state_names(tmp_path):
    checkpoint, state = tmp_path / "checkpoint", FoldState()
    assert finish_epoch(checkpoint, state, 0.5)
    assert not finish_epoch(checkpoint, state, 0.4)  # no gain: the best model of epoch 1 is kept, not copied
    saved, optimizer, best = read(checkpoint)
    assert (saved["epoch"], saved["best_epoch"], optimizer, best) == (2, 1, "epoch 2", "epoch 1")
    assert finish_epoch(checkpoint, state, 0.9)
    saved, optimizer, best = read(checkpoint)
    assert (saved["epoch"], saved["best_epoch"], best) == (3, 3, "epoch 3")
    assert [entry["epoch"] for entry in saved["history"]] == [1, 2, 3]


def test_a_kill_while_saving_a_new_best_leaves_the_previous_checkpoint_whole(tmp_path):
    checkpoint, state = tmp_path / "checkpoint", FoldState()
    finish_epoch(checkpoint, state, 0.5)
    with pytest.raises(Killed):
        finish_epoch(checkpoint, state, 0.9, kill_in_best=True)
    saved, optimizer, best = read(checkpoint)
    assert (saved["epoch"], saved["best_epoch"], optimizer, best) == (1, 1, "epoch 1", "epoch 1")

    accelerator = OneProcess()
    resumed = load_checkpoint(accelerator, checkpoint)
    assert (resumed.epoch, resumed.best_ua, accelerator.loaded_from) == (1, 0.5, "epoch 1")
    finish_epoch(checkpoint, resumed, 0.9)  # the next save clears what the killed one left
    assert read(checkpoint)[2] == "epoch 2" and not (tmp_path / "checkpoint.partial").exists()


def test_a_kill_between_the_two_renames_is_undone_on_restart(tmp_path):
    directory, new = tmp_path / "checkpoint", tmp_path / "checkpoint.partial"
    directory.mkdir()
    (directory / "state.json").write_text("old")
    new.mkdir()
    (new / "state.json").write_text("new")
    directory.rename(tmp_path / "checkpoint.old")  # the first rename of replace_directory, then SIGKILL
    restore_directory(directory)
    assert (directory / "state.json").read_text() == "old"
    replace_directory(new, directory)
    assert (directory / "state.json").read_text() == "new" and not (tmp_path / "checkpoint.old").exists()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert load_checkpoint(OneProcess(), tmp_path / "checkpoint") is None


def test_the_published_model_is_the_best_one(tmp_path):
    checkpoint, state = tmp_path / "checkpoint", FoldState()
    finish_epoch(checkpoint, state, 0.7)
    finish_epoch(checkpoint, state, 0.6)
    publish_best_model(checkpoint, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").read_text() == "epoch 1"
