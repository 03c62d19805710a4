"""Creates or updates MER's Hugging Face Space from this folder, uploading only the app's files and the project
modules it imports (`mer/...`, `modeling_mer/...`, under the same paths, so that `python app.py` imports them from
beside itself on the Space).

    python space/deploy.py --space_id user/mer-demo [--model user/mer-model] [--revision COMMIT]
        [--asr_model openai/whisper-base.en]

Authentication is huggingface_hub's (`hf auth login`, or the HF_TOKEN environment variable). The model the Space
serves (`--model`, else app.py's default) is pinned: the Space variables MER_MODEL and MER_MODEL_REVISION name it and
the commit it is at now (or the commit `--revision` names), so that the code the Space runs with
`trust_remote_code=True` cannot change under it. `--asr_model` becomes MER_ASR_MODEL. Both models are the `models`
of the Space's card.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard

__all__ = ["APP_FILES", "PROJECT_FILES", "REPO_DIR", "SPACE_DIR", "deploy", "space_card", "main"]

SPACE_DIR = Path(__file__).resolve().parent
REPO_DIR = SPACE_DIR.parent
# What the Space runs, and nothing else (no tests, no development helpers, no caches).
APP_FILES = (
    "app.py",
    "recognizer.py",
    "attention_plot.py",
    "dimension_plot.py",
    "example_clips.py",
    "requirements.txt",
    "packages.txt",
    "README.md",
)
# The project's modules the app imports, directly or through each other (relative to the repository and uploaded
# under the same paths): the timeline and audio decoding, and the model package, whose pipeline and speech
# recognizer both tabs use. Their third-party imports are in requirements.in.
PROJECT_FILES = (
    "mer/__init__.py",
    "mer/serving/__init__.py",
    "mer/serving/audio.py",
    "mer/serving/export.py",
    "mer/serving/inference.py",
    "mer/serving/runtime.py",
    "mer/serving/speakers.py",
    "mer/serving/tables.py",
    "mer/serving/timeline.py",
    "mer/serving/vad.py",
    "modeling_mer/__init__.py",
    "modeling_mer/asr_mer.py",
    "modeling_mer/configuration_mer.py",
    "modeling_mer/modeling_mer.py",
    "modeling_mer/pipeline_mer.py",
    "modeling_mer/processing_mer.py",
)


def space_card(model: str | None = None, asr_model: str | None = None, space_dir: Path = SPACE_DIR) -> str:
    """The Space card (README.md) with `models` naming `model` and `asr_model` where given."""
    card = SpaceCard.load(space_dir / "README.md")
    default_model, default_asr = card.data.models
    card.data.models = [model or default_model, asr_model or default_asr]
    return str(card)


def deploy(
    space_id: str,
    model: str | None = None,
    asr_model: str | None = None,
    private: bool = False,
    api: HfApi | None = None,
    revision: str | None = None,
) -> str:
    """Creates the Space `space_id` (Gradio SDK) if needed, replaces its app with this folder's `APP_FILES` and the
    repository's `PROJECT_FILES` in one commit (Python files it no longer has are deleted, in subfolders too), and
    pins the model it serves: MER_MODEL (`model`, else the card's default) and MER_MODEL_REVISION (the commit
    `revision` names, else the model's latest commit now). Sets MER_ASR_MODEL when `asr_model` is given.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: `model` or `asr_model` is a local path (a Space can only load models from the Hub), or the
            model (at `revision`) cannot be found on the Hub, before anything is uploaded.
    """
    for name, value in (("--model", model), ("--asr_model", asr_model)):
        if value and Path(value).exists():
            raise ValueError(
                f"{name} {value} is a local path; a Space loads its models from the Hub. Push the model first "
                "(save_pretrained + push_to_hub) and pass its Hub id."
            )
    api = api or HfApi()
    served = model or SpaceCard.load(SPACE_DIR / "README.md").data.models[0]
    try:
        pinned = api.model_info(served, revision=revision).sha
    except Exception as error:  # noqa: BLE001 - not found, gated, no network: the Space would not load it either
        at = f" at revision {revision}" if revision else ""
        raise ValueError(f"Cannot pin the model {served}{at} on the Hub ({type(error).__name__}: {error}).") from error
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mer-space-") as staging:
        for name in APP_FILES:
            shutil.copy2(SPACE_DIR / name, Path(staging) / name)
        for name in PROJECT_FILES:
            (Path(staging) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_DIR / name, Path(staging) / name)
        (Path(staging) / "README.md").write_text(space_card(model, asr_model), encoding="utf-8")
        commit = api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=staging,
            delete_patterns=["*.py"],
            commit_message=f"Deploy the MER app{f' with {model}' if model else ''}",
        )
    for key, value in (("MER_MODEL", served), ("MER_MODEL_REVISION", pinned), ("MER_ASR_MODEL", asr_model)):
        if value:
            api.add_space_variable(space_id, key, value)
    return commit.commit_url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space_id", required=True, help="the Space to create or update, as user/name")
    parser.add_argument("--model", help="Hub id of the MER model the Space serves (sets MER_MODEL)")
    parser.add_argument(
        "--revision", help="the model's commit (or tag, or branch) to pin (sets MER_MODEL_REVISION; default: now)"
    )
    parser.add_argument("--asr_model", help="Hub id of the speech-recognition model (sets MER_ASR_MODEL)")
    parser.add_argument("--private", action="store_true", help="create the Space private (new Spaces only)")
    args = parser.parse_args(argv)
    try:
        url = deploy(
            args.space_id, model=args.model, asr_model=args.asr_model, private=args.private, revision=args.revision
        )
    except ValueError as error:
        parser.error(str(error))
    print(f"Deployed: {url}\nSpace: https://huggingface.co/spaces/{args.space_id}")


if __name__ == "__main__":
    main()
