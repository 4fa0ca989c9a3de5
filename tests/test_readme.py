"""README's Python example runs as written (with the packaged MiniLM as the model directory)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_python_api_example_runs(minilm_dir):
    (block,) = python_blocks()
    code = block.replace('"/path/to/bert-dir"', repr(str(minilm_dir)))
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    assert tuple(namespace["logits"].shape) == (1, 3)


def test_setup_commands_are_what_ci_runs():
    text = README.read_text()
    test_command = (
        'pip install torch==2.13.0 && pip install -e ".[dev]" -c tests/constraints.txt && python -m pytest -q'
    )
    assert test_command in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci
