"""15. Who speaks when: the speaker pass of `mer timeline --speakers` on conversations between real actors, on this
machine's CPU.

For each corpus (default: EmoDB and RAVDESS under ../shared/data), each number of speakers (1 to 4) and each layout
(pauses of 0.5 to 1.5 s between turns, or turns back to back, where the speaker changes inside a speech segment),
`--conversations` conversations are built from the corpus's actors (`dataset_scripts.conversation`: 3 turns per
speaker, at least 6, of 1 or 2 utterances each, with their RTTM truth) and their speakers found as `mer timeline`
finds them (Silero VAD, Resemblyzer windows, clustering): with the number of speakers given (`--num-speakers`) and
found (`--speakers auto`). Reported per corpus, layout and number of speakers: the diarization error rate
(`pyannote.metrics`, with a 0.25 s collar around each true boundary as NIST scores it, and without), how often
`auto` finds the right number of speakers, and the speaker pass's real-time factor (seconds per second of
recording, voice activity detection included).

    .venv/bin/python -m bench.speakers [--corpus emodb=../shared/data/emodb ...] [--conversations 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.corpora import SHARED
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from dataset_scripts.conversation import build_conversation
from mer.serving.audio import stream_audio
from mer.serving.speakers import SpeakerEncoder, SpeakerSettings, speaker_turns
from mer.serving.vad import DEFAULT_MIN_SECONDS, VAD_SAMPLING_RATE, speech_segments

LAYOUTS = {"pauses": (0.5, 1.5), "back to back": (0.0, 0.0)}
COLLAR_SECONDS = 0.25  # NIST's: half a second around each true boundary is not scored


def diarization_errors(rttm: Path, turns: list[dict], collar: float) -> float:
    """The diarization error rate of `turns` against the RTTM truth (pyannote.metrics: missed speech, false alarm
    and confusion over the true speech time)."""
    from pyannote.core import Annotation, Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference = next(iter(load_rttm(rttm).values()))
    hypothesis = Annotation()
    for turn in turns:
        hypothesis[Segment(turn["start"], turn["end"])] = turn["speaker"]
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    return float(metric(reference, hypothesis, uem=reference.get_timeline().extent()))


def find_speakers(path: Path, encoder: SpeakerEncoder, settings: SpeakerSettings) -> tuple[list[dict], float]:
    """The speaker pass of `mer timeline` over a recording: its turns and the seconds it took."""
    started = time.perf_counter()
    segments = speech_segments(stream_audio(path, VAD_SAMPLING_RATE, 30.0), VAD_SAMPLING_RATE)
    turns = speaker_turns(segments, encoder, settings, DEFAULT_MIN_SECONDS)
    return turns, time.perf_counter() - started


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(torch.device("cpu"))
    encoder = SpeakerEncoder()
    rows, results = [], []
    with tempfile.TemporaryDirectory() as folder:
        for corpus in args.corpus:
            for layout, pauses in LAYOUTS.items():
                for count in args.speakers:
                    found = []
                    for seed in range(args.conversations):
                        conversation = build_conversation(
                            corpus, Path(folder) / f"talk{seed}.wav", speakers=count, turns=max(6, 3 * count),
                            seed=seed, pause_seconds=pauses,
                        )  # fmt: skip
                        given, seconds = find_speakers(conversation.wav_path, encoder, SpeakerSettings(count))
                        auto, auto_seconds = find_speakers(conversation.wav_path, encoder, SpeakerSettings())
                        found.append(
                            {
                                "seed": seed,
                                "duration": conversation.duration,
                                "der_given": diarization_errors(conversation.rttm_path, given, COLLAR_SECONDS),
                                "der_given_no_collar": diarization_errors(conversation.rttm_path, given, 0.0),
                                "der_auto": diarization_errors(conversation.rttm_path, auto, COLLAR_SECONDS),
                                "speakers_found": len({turn["speaker"] for turn in auto}),
                                "rtf": (seconds + auto_seconds) / 2 / conversation.duration,
                            }
                        )
                    name = corpus.partition("=")[0] if "=" in corpus else Path(corpus).name
                    summary = {
                        "corpus": name,
                        "layout": layout,
                        "speakers": count,
                        "conversations": found,
                        "der_given": statistics.mean(row["der_given"] for row in found),
                        "der_given_no_collar": statistics.mean(row["der_given_no_collar"] for row in found),
                        "der_auto": statistics.mean(row["der_auto"] for row in found),
                        "count_accuracy": statistics.mean(row["speakers_found"] == count for row in found),
                        "rtf": statistics.mean(row["rtf"] for row in found),
                    }
                    results.append(summary)
                    rows.append(
                        [name, layout, count, summary["der_given"], summary["der_given_no_collar"],
                         summary["der_auto"], summary["count_accuracy"],
                         " ".join(str(row["speakers_found"]) for row in found), summary["rtf"]]
                    )  # fmt: skip
                    print(markdown_table(["corpus", "layout", "speakers"], [rows[-1][:3]]).split("\n")[-1], flush=True)
    table = markdown_table(
        ["corpus", "layout", "speakers", "DER, number given", "DER given, no collar", "DER, auto",
         "auto count right", "auto found", "speaker pass RTF"],
        rows,
    )  # fmt: skip
    settings = {
        "quick": args.quick,
        "corpus": args.corpus,
        "conversations": args.conversations,
        "speakers": args.speakers,
        "collar_seconds": COLLAR_SECONDS,
        "encoder_weights": str(encoder.weights),
    }
    return write_report(args.out, "speakers", machine, settings, {"rows": results}, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "speakers", model_options=False)
    parser.add_argument("--corpus", nargs="+", default=None, help="name=directory of a corpus (or an IEMOCAP layout)")
    parser.add_argument("--conversations", type=int, default=None, help="per corpus, layout and number of speakers")
    parser.add_argument("--speakers", type=int, nargs="+", default=None, help="numbers of speakers (default 1-4)")
    args = parser.parse_args(argv)
    default_corpora = [f"{name}={SHARED / 'data' / name}" for name in ("emodb", "ravdess")]
    return settle_arguments(
        args, corpus=(default_corpora, default_corpora[:1]), conversations=(5, 1), speakers=([1, 2, 3, 4], [1, 2])
    )


def main(argv: list[str] | None = None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
