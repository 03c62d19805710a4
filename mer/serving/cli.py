"""The `mer` command: emotion from your own recordings.

    mer predict PATH... --model M [--transcripts transcripts.csv] [--output predictions.csv|.jsonl]
    mer timeline RECORDING --model M --out DIR

`predict` classifies files and every file under folders, appending one record per file as it goes (run the same
command again to continue a killed run); `timeline` cuts a long recording into speech segments by voice activity
and classifies each (the same command continues a killed run too). Missing transcripts are transcribed
(`--asr_model`, or `MER_ASR_MODEL`).

Exit status: 0 when everything was classified, 1 when some files failed (they are listed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

from mer.serving.audio import FFmpegMissingError
from mer.serving.runtime import DEFAULT_CPU_RUNTIME, RUNTIMES
from modeling_mer.asr_mer import ASR_BACKENDS

__all__ = ["main"]

logger = logging.getLogger("mer")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the MER model: a Hub id or a directory saved by train.py")
    parser.add_argument(
        "--revision",
        default=None,
        help="the Hub commit (or tag, or branch) of --model to load: a commit hash pins the code that runs and the "
        "weights (default: MER_MODEL_REVISION, else the latest)",
    )
    parser.add_argument(
        "--asr_model",
        default=None,
        help="speech recognition for missing transcripts: a Hub id, a faster-whisper size (small.en) or a local "
        "directory in either format (default: MER_ASR_MODEL, else openai/whisper-small.en)",
    )
    parser.add_argument(
        "--asr_backend", default="auto", choices=ASR_BACKENDS, help="default: faster-whisper when installed"
    )
    parser.add_argument(
        "--runtime",
        default=None,
        choices=RUNTIMES,
        help=f"how the model runs on a CPU (default {DEFAULT_CPU_RUNTIME}: the fastest whose predictions agree with "
        "eager fp32; a GPU runs eager)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict", help="classify audio files and folders", description=_first_line("predict")
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="audio files and folders (walked recursively)")
    _common_options(predict)
    predict.add_argument(
        "--transcripts",
        type=Path,
        default=None,
        help="CSV with a file column (path/file/filename) and a transcript column (transcript/text); files it "
        "misses are transcribed",
    )
    predict.add_argument("--output", type=Path, default=Path("predictions.csv"), help=".csv or .jsonl (appended)")
    predict.add_argument("--overwrite", action="store_true", help="replace --output instead of continuing it")
    predict.add_argument("--batch_size", type=_positive_int, default=8, help="utterances per forward pass")

    timeline = commands.add_parser(
        "timeline", help="an emotion timeline of a long recording", description=_first_line("timeline")
    )
    timeline.add_argument("recording", type=Path, help="the recording: any format ffmpeg reads, any length")
    _common_options(timeline)
    timeline.add_argument(
        "--out", type=Path, required=True, help="folder for timeline.csv, .json and .png (a killed run continues)"
    )
    timeline.add_argument("--overwrite", action="store_true", help="replace another timeline held in --out")
    timeline.add_argument("--batch_size", type=_positive_int, default=8, help="segments per forward pass")
    timeline.add_argument("--min_seconds", type=float, default=None, help="least speech in a segment (default 0.5)")
    timeline.add_argument(
        "--max_seconds",
        type=float,
        default=None,
        help="longest segment (default: the segmenter's, within the model's window)",
    )
    timeline.add_argument(
        "--speakers",
        choices=("auto",),
        default=None,
        help="tell the speakers apart (speaker embeddings, clustered): a speaker per segment, speakers.csv, a lane "
        "per speaker in timeline.png",
    )
    timeline.add_argument(
        "--num-speakers", "--num_speakers", dest="num_speakers", type=_positive_int, default=None,
        help="how many speakers there are, when known (implies --speakers auto)",
    )  # fmt: skip
    timeline.add_argument(
        "--max-speakers", "--max_speakers", dest="max_speakers", type=_positive_int, default=None,
        help="at most this many speakers (implies --speakers auto)",
    )  # fmt: skip
    timeline.add_argument(
        "--enroll", action="append", default=[], metavar="NAME=CLIP",
        help="a known voice: speakers matching the clip's (2 s of speech or more) are called NAME; give it once per "
        "voice (implies --speakers auto)",
    )  # fmt: skip
    return parser


def _first_line(command: str) -> str:
    return {
        "predict": "Classifies every recording in files and folders; results are appended as they are produced, and "
        "the same command continues a killed run.",
        "timeline": "Splits a long recording into speech segments (Silero VAD), transcribes and classifies each, and "
        "writes a table and a picture of the emotions over time.",
    }[command]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _quiet_libraries() -> None:
    # The console shows progress and results; library chatter goes to the log at debug level.
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# Exit statuses: 0 done; 1 some files could not be classified (each has its record); 2 a usage error (a bad path,
# option or input, named); 3 the model was found but cannot be loaded (named, with why).
EXIT_FAILED_FILES, EXIT_USAGE, EXIT_MODEL = 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    from mer.serving.inference import ModelLoadError

    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        if args.command == "predict":
            return _predict(args)
        return _timeline(args)
    except ModelLoadError as error:
        print(f"mer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_MODEL
    except (ValueError, OSError, FFmpegMissingError) as error:
        print(f"mer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _load(args: argparse.Namespace):
    from mer.serving.inference import load_pipeline

    return load_pipeline(
        args.model, args.asr_model, args.asr_backend, args.runtime, args.device, revision=args.revision
    )


def _predict(args: argparse.Namespace) -> int:
    from mer.serving.predict import PredictionLog, TranscriptTable, find_audio_files, predict_files

    check_output_file(args.output)  # before anything loads
    roots = [path if path.is_dir() else path.parent for path in map(Path, args.paths)]
    transcripts = TranscriptTable(args.transcripts, roots) if args.transcripts else None
    skip = [args.output] + ([args.transcripts] if args.transcripts else [])
    files = find_audio_files(args.paths, skip=skip)
    if not files:
        raise ValueError(f"No files found in {', '.join(args.paths)}.")
    pipe = _load(args)
    labels = pipe.labels
    log = PredictionLog(
        args.output, labels, args.model, pipe.fingerprint, pipe.runtime, args.overwrite, dimensions=pipe.dimensions
    )
    start = time.perf_counter()
    summary = predict_files(pipe, files, log, transcripts, args.batch_size, progress=not args.quiet)
    seconds = time.perf_counter() - start
    rate = summary.classified / seconds if seconds > 0 else 0.0
    print(
        f"Classified {summary.classified} files ({summary.audio_seconds / 3600:.2f} h of audio, "
        f"{summary.transcribed} transcribed by speech recognition) in {seconds:.1f} s ({rate:.1f} files/s); "
        f"{summary.already_done} were already in {args.output}."
    )
    if summary.cropped:
        shown = ", ".join(summary.cropped[:3]) + (
            f" and {len(summary.cropped) - 3} more" if len(summary.cropped) > 3 else ""
        )
        print(
            f"{len(summary.cropped)} files were longer than the model reads: only their first "
            f"{summary.max_seconds:g} s were classified ({shown}; column cropped). For long recordings, use mer "
            "timeline.",
            file=sys.stderr,
        )
    if summary.failed:
        print(f"{len(summary.failed)} files could not be classified:", file=sys.stderr)
        for path, reason in summary.failed.items():
            print(f"  {path}: {reason}", file=sys.stderr)
        return EXIT_FAILED_FILES
    return 0


def check_output_file(output: Path) -> None:
    """`mer predict --output` before any model loads: a .csv or .jsonl file (not a folder) whose folder exists or
    can be made.

    Raises:
        ValueError: naming the output and what is wrong with it.
    """
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a .csv or .jsonl file.")
    if output.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"--output must end in .csv or .jsonl, got {output.name}.")
    parent = next((folder for folder in output.absolute().parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--output {output}: {parent} is a file, not a folder.")


def _timeline(args: argparse.Namespace) -> int:
    from mer.serving.audio import decode_audio
    from mer.serving.timeline import write_timeline

    if not args.recording.is_file():
        raise FileNotFoundError(f"No such recording: {args.recording}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder for timeline.csv, .json and .png.")
    decode_audio(args.recording, 16000, max_seconds=1.0)  # an unreadable file stops here, before the model loads
    speakers = encoder = None
    if args.speakers or args.num_speakers or args.max_speakers or args.enroll:
        from mer.serving.speakers import SpeakerEncoder, SpeakerSettings, enrolment

        clips = []
        for given in args.enroll:
            name, _, clip = given.partition("=")
            if not clip:
                raise ValueError(f"--enroll {given}: give NAME=CLIP, e.g. --enroll alice=alice.wav.")
            if not Path(clip).is_file():
                raise FileNotFoundError(f"--enroll {given}: no such clip: {clip}")
            clips.append((name, str(Path(clip).resolve())))
        speakers = SpeakerSettings(num_speakers=args.num_speakers, max_speakers=args.max_speakers, enrol=tuple(clips))
        encoder = SpeakerEncoder()  # missing weights stop here, before the model loads
        enrolment(encoder, speakers.enrol)  # and so does an enrolment clip without enough speech
    pipe = _load(args)
    timeline = write_timeline(
        pipe,
        args.recording,
        args.out,
        batch_size=args.batch_size,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        progress=not args.quiet,
        overwrite=args.overwrite,
        speakers=speakers,
        speaker_encoder=encoder,
    )
    print(timeline.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
