"""The test environment is the pinned one: oracles drifting to other versions fail here, by name.

The oracles (transformers, peft, scikit-learn, ...) are pinned exactly in pyproject.toml's ``dev`` extra,
the rest of the environment in tests/constraints.txt, which README's test command passes to pip. A
parity test that passes against other versions proves nothing about the pinned ones, and one that fails
against them is not a bug of ours: either way the mismatch has to be visible.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "tests" / "constraints.txt"


def dev_pins() -> dict[str, str]:
    """``name -> version`` for every ``==`` requirement of the dev extra."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {}
    for line in extras["dev"]:
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[req.name.lower()] = exact[0]
    return pins


def constraint_pins() -> dict[str, str]:
    pins = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        assert exact, f"{CONSTRAINTS}:{number}: {line!r} is not an exact pin (name==version)"
        pins[req.name.lower()] = exact[0]
    return pins


def installed(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def test_the_oracles_are_pinned_exactly():
    pins = dev_pins()
    oracles = ("transformers", "peft", "scikit-learn", "scipy", "seqeval", "hypothesis", "pytest", "ruff")
    for oracle in oracles:
        assert oracle in pins, f"{oracle} has no exact pin in pyproject.toml's dev extra"
    assert "hydra-optuna-sweeper" in pins


def test_pins_do_not_contradict_each_other():
    both = set(dev_pins()) & set(constraint_pins())
    assert {n: dev_pins()[n] for n in both} == {n: constraint_pins()[n] for n in both}


@pytest.mark.parametrize("source", ["pyproject.toml dev extra", "tests/constraints.txt"])
def test_installed_versions_are_the_pinned_ones(source):
    pins = dev_pins() if source.startswith("pyproject") else constraint_pins()
    drifted = []
    for name, pinned in sorted(pins.items()):
        have = installed(name)
        # a local label (torch's "+cpu") names the build, not the version
        if have is None or Version(have.public) != Version(pinned):
            drifted.append(f"{name} {have or 'missing'} (pinned {pinned})")
    assert not drifted, (
        f"installed versions differ from {source}: {', '.join(drifted)}; "
        'install with: pip install -e ".[dev]" -c tests/constraints.txt'
    )
