"""Says whether requirements.lock still satisfies pyproject.toml, before `make setup` installs anything else.

    python scripts/check_lock.py [--pyproject pyproject.toml] [--lock requirements.lock]

Every requirement of the project (its dependencies and every extra) must be pinned in the lock at a version its
range allows. A dependency added to pyproject.toml but not locked, or a range the locked version falls outside,
stops the set-up with the package named: the fix is `make lock`, never an unlocked install. Exits 1 on a mismatch.
Runs in the project's environment after the lock is installed (it needs `packaging`, which the lock pins).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = ["locked_versions", "project_requirements", "lock_problems", "main"]


def locked_versions(lock_text: str) -> dict[str, Version]:
    """The `name==version` pins of a pip-compile output, by canonical name; comments and options are skipped."""
    pins = {}
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if "==" not in line or line.startswith("-"):
            continue
        name, version = line.split("==", 1)
        pins[canonicalize_name(name.split("[", 1)[0])] = Version(version.split(";", 1)[0].strip())
    return pins


def project_requirements(pyproject: dict) -> list[Requirement]:
    """The project's dependencies and those of all its extras, without references to the project itself."""
    project = pyproject["project"]
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    requirements = [Requirement(text) for text in texts]
    own_name = canonicalize_name(project["name"])
    return [requirement for requirement in requirements if canonicalize_name(requirement.name) != own_name]


def lock_problems(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    """One line for each requirement that the pins leave out or contradict (markers evaluated for this machine)."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is in pyproject.toml but not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} is in pyproject.toml but the lock has {name}=={pins[name]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"))
    args = parser.parse_args(argv)
    if not args.lock.is_file():
        print(f"{args.lock} is missing: run `make lock` to create it.", file=sys.stderr)
        return 1
    requirements = project_requirements(tomllib.loads(args.pyproject.read_text(encoding="utf-8")))
    problems = lock_problems(requirements, locked_versions(args.lock.read_text(encoding="utf-8")))
    for problem in problems:
        print(f"{args.lock} is out of date: {problem}.", file=sys.stderr)
    if problems:
        print(
            f"Run `make lock` to re-resolve {args.lock} (and space/requirements.txt), then commit them with "
            f"{args.pyproject}. Nothing was installed beyond the locked versions.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
