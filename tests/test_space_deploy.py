"""The Space folder and its deployment: the card, the requirements, what deploy.py uploads and the app
started as the Space starts it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas
import pytest
from space_fixtures import (
    REPO,
    SPACE_DIR,
    Client,
    RepositoryNotFoundError,
    SpaceCard,
    free_port,
    handle_file,
    locked_versions,
    space_app,
    space_deploy,
    space_recognizer,
)

pytest_plugins = ("space_fixtures",)  # its fixtures: models, recognizer, clips, the served app
# gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix. (Older pandas lacks the warning
# class, and naming a missing class in a filter stops the whole test session.)
PANDAS_4_WARNING = hasattr(pandas.errors, "Pandas4Warning")
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")] if PANDAS_4_WARNING else []


def test_the_space_card_and_requirements_pin_the_locked_versions_and_name_the_models():
    locked = locked_versions((REPO / "requirements.lock").read_text())
    card = SpaceCard.load(SPACE_DIR / "README.md").data
    assert (card.sdk, card.sdk_version, card.app_file) == ("gradio", str(locked["gradio"]), "app.py")
    assert card.models == [space_app.DEFAULT_MODEL, space_recognizer.DEFAULT_ASR_MODEL]
    assert card.title and len(card.short_description) <= 60
    pins = locked_versions((SPACE_DIR / "requirements.txt").read_text())
    assert {"torch", "transformers", "numpy", "matplotlib", "huggingface-hub"} <= set(pins)
    assert {"silero-vad", "onnxruntime", "faster-whisper", "tqdm"} <= set(pins)  # the timeline's, and fast ASR
    assert {name: version for name, version in pins.items() if locked.get(name) != version} == {}
    assert {"ffmpeg", "espeak-ng"} <= set((SPACE_DIR / "packages.txt").read_text().split())


PROJECT_PACKAGES = ("mer", "modeling_mer")  # what deploy.py may upload from outside space/


def _imported_files(path: Path) -> set[Path]:
    """The files of the Space's siblings and of `PROJECT_PACKAGES` that `path` imports anywhere in its code (inside
    functions too), with the `__init__.py` of every package on the way."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to the file's own package
                package = path.parent.relative_to(REPO).parts
                module = ".".join([*package[: len(package) - node.level + 1], *([module] if module else [])])
            names.add(module)
            # `from mer.serving import audio` imports a module
            names |= {f"{module}.{alias.name}" for alias in node.names}
    files = set()
    for name in names:
        parts = name.split(".")
        if len(parts) == 1 and (SPACE_DIR / f"{name}.py").is_file():
            files.add(SPACE_DIR / f"{name}.py")
        elif parts[0] in PROJECT_PACKAGES:
            for depth in range(1, len(parts) + 1):
                for candidate in (
                    REPO.joinpath(*parts[:depth], "__init__.py"),
                    REPO.joinpath(*parts[:depth]).with_suffix(".py"),
                ):
                    if candidate.is_file():
                        files.add(candidate)
    return files


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of what `path` imports from outside the standard library, the Space and the project."""
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
    tops = {name.split(".")[0] for name in names}
    siblings = {file.stem for file in SPACE_DIR.glob("*.py")}
    return tops - set(sys.stdlib_module_names) - siblings - set(PROJECT_PACKAGES) - {"__future__"}


def _uploaded_files() -> set[Path]:
    return {SPACE_DIR / name for name in space_deploy.APP_FILES} | {REPO / name for name in space_deploy.PROJECT_FILES}


def test_deploy_uploads_every_module_the_app_imports_and_only_those():
    uploaded = _uploaded_files()
    reached, todo = set(), [SPACE_DIR / "app.py"]
    while todo:  # everything the app imports, following imports through the project's modules
        path = todo.pop()
        for imported in _imported_files(path) - reached:
            assert imported in uploaded, f"{path.relative_to(REPO)} imports {imported.relative_to(REPO)}, not uploaded"
            reached.add(imported)
            todo.append(imported)
    assert {str(path.relative_to(REPO)) for path in reached if path.parent != SPACE_DIR} == set(
        space_deploy.PROJECT_FILES
    )  # no project module the app does not need
    assert {path for path in uploaded if path.suffix == ".py"} == reached | {SPACE_DIR / "app.py"}
    assert "dev_models.py" not in space_deploy.APP_FILES and "deploy.py" not in space_deploy.APP_FILES


def test_the_space_requirements_cover_what_the_uploaded_modules_import():
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    pins = set(locked_versions((SPACE_DIR / "requirements.txt").read_text())) | {"gradio"}  # gradio: sdk_version
    for path in sorted(path for path in _uploaded_files() if path.suffix == ".py"):
        for name in _third_party_imports(path):
            names = {dist.lower().replace("_", "-") for dist in distributions.get(name, [name])}
            assert names & pins, f"{path.relative_to(REPO)} imports {name}, which space/requirements.txt lacks"


COMMITS = {None: "0123456789abcdef0123456789abcdef01234567", "v1.0": "fedcba9876543210fedcba9876543210fedcba98"}


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records every call, and the files of each uploaded folder."""

    def __init__(self, *args, **kwargs):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {
            path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8")
            for path in folder.rglob("*")
            if path.is_file()
        }
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/spaces/{kwargs['repo_id']}/commit/1"})

    def add_space_variable(self, repo_id, key, value, **kwargs):
        self.calls.append(("add_space_variable", repo_id, {"key": key, "value": value}))

    def model_info(self, repo_id, revision=None, **kwargs):
        if repo_id.endswith("unpublished"):
            url = f"https://huggingface.co/api/models/{repo_id}"
            response = httpx.Response(404, request=httpx.Request("GET", url))
            raise RepositoryNotFoundError(f"404 Client Error: Repository Not Found for url: {url}", response=response)
        self.calls.append(("model_info", repo_id, {"revision": revision}))
        return type("ModelInfo", (), {"sha": COMMITS[revision]})  # the commit the revision is at


def test_deploy_creates_the_space_and_uploads_only_the_app(monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)

    space_deploy.main(["--space_id", "someone/mer-demo", "--model", "someone/mer-iemocap"])

    info, (create, _, create_kwargs), (upload, repo, upload_kwargs), *variables = api.calls
    assert info == ("model_info", "someone/mer-iemocap", {"revision": None})
    assert (create, create_kwargs) == (
        "create_repo",
        {"repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True},
    )
    assert (upload, repo, upload_kwargs["repo_type"]) == ("upload_folder", "someone/mer-demo", "space")
    files = upload_kwargs["files"]
    assert sorted(files) == sorted(space_deploy.APP_FILES + space_deploy.PROJECT_FILES)
    assert files["app.py"] == (SPACE_DIR / "app.py").read_text()
    # under the repository's paths
    assert files["mer/serving/timeline.py"] == (REPO / "mer" / "serving" / "timeline.py").read_text()
    card = SpaceCard(upload_kwargs["files"]["README.md"]).data
    assert card.models == ["someone/mer-iemocap", "openai/whisper-small.en"] and card.sdk == "gradio"
    assert upload_kwargs["delete_patterns"] == ["*.py"]  # modules the app no longer has do not linger
    assert [kwargs for _, _, kwargs in variables] == [  # the model and the commit it is at now: pinned
        {"key": "MER_MODEL", "value": "someone/mer-iemocap"},
        {"key": "MER_MODEL_REVISION", "value": COMMITS[None]},
    ]
    assert "https://huggingface.co/spaces/someone/mer-demo" in capsys.readouterr().out


def test_deploy_pins_the_default_model_too_and_the_revision_asked_for(monkeypatch):
    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", api=api)
    default_model = SpaceCard.load(SPACE_DIR / "README.md").data.models[0]
    variables = {kwargs["key"]: kwargs["value"] for name, _, kwargs in api.calls if name == "add_space_variable"}
    assert variables == {"MER_MODEL": default_model, "MER_MODEL_REVISION": COMMITS[None]}

    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", model="someone/mer-iemocap", revision="v1.0", api=api)
    variables = {kwargs["key"]: kwargs["value"] for name, _, kwargs in api.calls if name == "add_space_variable"}
    assert variables["MER_MODEL_REVISION"] == COMMITS["v1.0"]  # a tag becomes its commit


def test_deploy_refuses_a_model_it_cannot_find_before_uploading_anything(monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)
    with pytest.raises(SystemExit):
        space_deploy.main(["--space_id", "someone/mer-demo", "--model", "someone/unpublished"])
    assert "Cannot pin the model someone/unpublished on the Hub (RepositoryNotFoundError" in capsys.readouterr().err
    assert api.calls == []


def test_deploy_refuses_a_local_model_directory(models, monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)
    with pytest.raises(SystemExit):
        space_deploy.main(["--space_id", "someone/mer-demo", "--model", models[0]])
    assert "is a local path; a Space loads its models from the Hub" in capsys.readouterr().err
    assert api.calls == []


# `python app.py` with the project's editable install out of reach, as on the Space: mer and modeling_mer can only
# come from beside app.py (the script's folder, first on sys.path; here the current directory).
_RUN_WITHOUT_THE_PROJECT = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '').lower()]; "
    "sys.argv = ['app.py']; runpy.run_path('app.py', run_name='__main__')"
)


def _uploaded_space(folder: Path) -> Path:
    """What deploy.py uploads, written out to `folder` (as the Space's repository holds it)."""
    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", api=api)
    (upload,) = [kwargs for name, _, kwargs in api.calls if name == "upload_folder"]
    for name, text in upload["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("layout", ["repository", "uploaded"])
def test_python_app_py_serves_the_model_named_by_mer_model_in_the_repository_and_as_uploaded(
    layout, models, clips, tmp_path
):
    if layout == "repository":  # `make space`: the project's modules come from its editable install
        command, cwd = [sys.executable, str(SPACE_DIR / "app.py")], REPO
    else:  # the Space: from the modules deploy.py uploads beside app.py, and nowhere else
        command, cwd = [sys.executable, "-c", _RUN_WITHOUT_THE_PROJECT], _uploaded_space(tmp_path / "space")
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "MER_MODEL": models[0],
        "MER_ASR_MODEL": models[1],
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TMPDIR": str(temp),
    }
    log = tmp_path / "app.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            client = _connect(f"http://127.0.0.1:{port}/", process, log, timeout=120)
            result = client.predict(handle_file(str(clips["happy"])), "what a wonderful party!", api_name="/predict")
            assert {c["label"] for c in result["confidences"]} == {"neutral", "happy", "angry", "sad"}
            *_, summary = client.predict(handle_file(str(clips["happy"])), api_name="/timeline")  # VAD, ASR, plot
            assert summary.startswith("1 speech segments")
            assert list(temp.glob("mer-space-*/timelines/*/timeline.png"))  # while it serves, its files are kept
        finally:
            process.terminate()  # SIGTERM, as a Space is stopped
            process.wait(timeout=30)
    assert f"Loaded {models[0]}" in log.read_text()
    assert not list(temp.glob("mer-*")), "the app left its folders behind when it stopped"


def _connect(url: str, process: subprocess.Popen, log: Path, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {timeout} s: {log.read_text()[-2000:]}")
