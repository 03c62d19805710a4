"""Several public corpora in one command: train.py --corpus on RAVDESS and EmoDB (their release layouts, read by the
builders), within each corpus and leave-one-corpus-out, with a Whisper tower; per-corpus scores and the time of each.

    .venv/bin/python -m bench.corpora [--quick] [--protocols within-corpus leave-one-corpus-out]

The text tower is a tiny random-init BERT over the corpora's words: the sentences of both corpora carry no emotion,
so MER must hear it. `--quick` runs one epoch of one round on small generated trees with a tiny Whisper (the test
of this code path).
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from bench.record import REPO, base_parser, machine_info, markdown_table, run_train, settle_arguments, write_report
from mer.tiny import build_tiny_encoders, build_tiny_whisper

SHARED = REPO.parent / "shared"
PROTOCOLS = ("within-corpus", "leave-one-corpus-out")
# bench.emodb's Whisper settings (section 8), with fewer epochs to fit 2 CPU cores.
MER_WHISPER_ARGS = (
    "--num_epochs 5 --early_stopping_patience 3 --learning_rate 5e-4 --encoder_learning_rate 5e-5 --batch_size 8"
)
WORDS = "kids are talking by the door dogs sitting".split()


def train(corpora: dict[str, str], protocol: str, whisper: str, text: str, out: Path, settings: str, folds) -> dict:
    """One train.py run; returns its results.json with the wall time."""
    arguments = [
        *[arg for name, path in corpora.items() for arg in ("--corpus", f"{name}={path}")],
        "--protocol", protocol, "--skip_invalid", "--audio_model", whisper, "--text_model", text,
        "--output_dir", str(out), "--num_workers", "0", "--ablations", "false", *shlex.split(settings),
        *(["--folds", *folds] if folds else []),
    ]  # fmt: skip
    command, seconds = run_train(arguments, f"--protocol {protocol}")
    summary = json.loads((out / "results.json").read_text())
    summary["seconds"] = seconds
    summary["command"] = shlex.join(command)
    return summary


def quick_corpora(root: Path) -> dict[str, str]:
    sys.path.insert(0, str(REPO / "tests"))
    from release_fixtures import write_emodb, write_ravdess

    return {"ravdess": str(write_ravdess(root / "RAVDESS")), "emodb": str(write_emodb(root / "emodb"))}


def run(args) -> dict:
    machine = machine_info(torch.device("cpu"))
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="corpora-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpora = quick_corpora(work / "data") if args.quick else {"ravdess": args.ravdess, "emodb": args.emodb}
    from dataset_scripts.emodb import SENTENCES

    words = WORDS + sorted({w.strip(".,!?").lower() for sentence in SENTENCES.values() for w in sentence.split()})
    _, text = build_tiny_encoders(work / "encoders", words)
    whisper = str(build_tiny_whisper(work / "encoders")) if args.quick else args.whisper
    # The generated trees hold a few of each release's files.
    settings = "--num_epochs 1 --batch_size 4 --allow_incomplete" if args.quick else args.mer_args
    results, rows = {}, []
    for protocol in args.protocols:
        folds = (["1"] if protocol == "within-corpus" else ["emodb"]) if args.quick else None
        summary = train(corpora, protocol, whisper, str(text), work / protocol, settings, folds)
        results[protocol] = {
            "seconds": summary["seconds"],
            "command": summary["command"],
            "protocol": summary["protocol"],
            "corpora": summary["corpora"],
            "pooled": {key: summary["pooled"][f"test_{key}"]["mean"] for key in ("wa", "ua", "macro_f1")},
            "averaged": {key: summary["averaged"][f"test_{key}"]["mean"] for key in ("wa", "ua", "macro_f1")},
            "table": summary["table"],
        }
        for name, scores in summary["corpora"].items():
            folds_run = list(scores["folds"])
            averaged, pooled = scores["averaged"], scores["pooled"]
            rows.append(
                [
                    protocol,
                    name,
                    len(folds_run),
                    scores["test_size"],
                    f"{100 * averaged['test_wa']['mean']:.1f} / {100 * averaged['test_ua']['mean']:.1f}",
                    f"{100 * pooled['test_wa']['mean']:.1f} / {100 * pooled['test_ua']['mean']:.1f}",
                    f"{summary['seconds'] / 60:.0f} min",
                ]
            )
    headers = ["protocol", "test corpus", "folds", "utterances", "WA / UA, mean over folds", "WA / UA, pooled", "run"]
    settings_record = {
        "quick": args.quick,
        "corpora": corpora,
        "whisper": whisper,
        "mer_args": settings,
        "work_dir": str(work),
    }
    return write_report(args.out, "corpora", machine, settings_record, results, markdown_table(headers, rows))


def parse_args(argv: list[str] | None = None):
    parser = base_parser(__doc__, "corpora", model_options=False)
    parser.add_argument("--ravdess", default=str(SHARED / "data" / "ravdess"), help="RAVDESS speech release.")
    parser.add_argument("--emodb", default=str(SHARED / "data" / "emodb"), help="EmoDB release (with wav/).")
    parser.add_argument("--whisper", default=str(SHARED / "models" / "whisper-tiny.en"), help="Whisper checkpoint.")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--mer-args", default=MER_WHISPER_ARGS, help="train.py settings.")
    parser.add_argument("--work-dir", default=None, help="Where runs go (default: a temporary folder).")
    return settle_arguments(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    return run(args)


if __name__ == "__main__":
    main()
