"""What the scripts share: Hydra composition with one-line errors and the exit-code contract.

    exit 0   success
    exit 2   user error (bad config key or value, bad data file, bad checkpoint): one line on stderr
    exit 1   anything else (a bug): the traceback is kept

Hydra reports composition errors over several lines and exits with 1, so overrides are composed and
validated once up front (every value of a ``-m`` sweep included) before Hydra starts the job.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ftcore.config import Config, register_configs
from ftcore.errors import FtcoreError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` as one line on stderr and exit."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(code)


def _one_line(e: BaseException) -> str:
    """Hydra/OmegaConf messages span lines and causes (key, object type...): keep what a user needs."""
    text = str(e) if e.__cause__ is None else f"{e}\n{e.__cause__}"
    text = text.split("Config search path:")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [line for line in lines if not line.startswith(("object_type=", "To append", "reference_type="))]
    return "; ".join(keep) or type(e).__name__


def _override_variants(overrides: list[str]) -> list[list[str]]:
    """Plain override lists covering every value of every sweep (``key=a,b``, ``range(...)``, ...).

    The first list takes the first value of each sweep; each further list changes one sweep's value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    options = []
    for text, o in zip(overrides, parsed):
        if o.is_sweep_override():
            key = text.split("=", 1)[0]
            options.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            options.append([text])
    first = [values[0] for values in options]
    variants = [first]
    for i, values in enumerate(options):
        for value in values[1:]:
            variants.append(first[:i] + [value] + first[i + 1 :])
    return variants


def check_overrides(argv: list[str], config_name: str = "config") -> None:
    """Compose and validate the config for the command-line overrides; exit 2 on the first error."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if "=" in a and not a.startswith(("hydra.", "hydra/", "-", "+hydra"))]
    try:
        variants = _override_variants(overrides)
    except HydraException as e:
        fail(f"cannot parse overrides: {_one_line(e)}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose(config_name, overrides=variant)
                to_config(cfg).validate()
            except (HydraException, OmegaConfBaseException) as e:
                fail(_one_line(e))
            except FtcoreError as e:
                fail(str(e))


def resume_in_place(argv: list[str]) -> None:
    """``resume=<run dir>`` continues the run in the directory it came from: point Hydra's run directory
    there (unless the command sets it)."""
    resume = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("resume=")), None)
    if resume and not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append(f"hydra.run.dir={resume}")


def to_config(cfg: DictConfig) -> Config:
    """The composed DictConfig as the typed :class:`Config` dataclass (``???`` values must be set)."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        return OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", "") or "a required key"
        raise FtcoreError(f"{key} must be set (it is ??? in the config)") from None


def main(task: Callable[[DictConfig], object], config_name: str = "config") -> None:
    """Run ``task`` as a Hydra app: validated overrides, one-line user errors, exit code 2 for them."""
    import hydra

    register_configs()
    argv = sys.argv[1:]
    if not any(a in ("--help", "-h", "--cfg", "-c", "--info") or a.startswith("--cfg") for a in argv):
        check_overrides(argv, config_name)

    @functools.wraps(task)  # Hydra names the job (and its log file) after the script that defines task
    def guarded(cfg: DictConfig):
        try:
            return task(cfg)  # a sweeper (e.g. Optuna) optimises the returned value
        except FtcoreError as e:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.get().mode == RunMode.MULTIRUN:  # one failed job must not end the sweep
                print(f"error: job {HydraConfig.get().job.num}: " + " ".join(str(e).split()), file=sys.stderr)
                return float("nan")
            fail(str(e))

    hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(guarded)()


def parse_key_values(
    argv: list[str], defaults: dict[str, object], required: tuple[str, ...] = ()
) -> tuple[dict, list[str]]:
    """``key=value`` arguments of the run-directory scripts (evaluate, predict, export).

    Returns the values of ``defaults``' keys (typed like their defaults; ``None`` defaults stay strings)
    and the ``data.*`` / ``trainer.*`` overrides meant for the run's own config. Anything else exits 2.
    """
    values, run_overrides = dict(defaults), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            fail(f"argument {arg!r} is not key=value; expected keys: {', '.join(defaults)}")
        if key.startswith(("data.", "trainer.")):
            run_overrides.append(arg)
        elif key not in defaults:
            fail(f"unknown key {key!r}; expected one of: {', '.join(defaults)}, data.*, trainer.*")
        elif isinstance(defaults[key], bool):
            if value.lower() not in ("true", "false"):
                fail(f"{key}={value} must be true or false")
            values[key] = value.lower() == "true"
        elif isinstance(defaults[key], int):
            try:
                values[key] = int(value)
            except ValueError:
                fail(f"{key}={value} must be an integer")
        else:
            values[key] = value
    for key in required:
        if not values.get(key):
            fail(f"{key}=... is required")
    return values, run_overrides


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """The run's config with ``data.*`` / ``trainer.*`` overrides merged in, typed and validated."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(config), OmegaConf.from_dotlist(overrides))
        result = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        fail(_one_line(e))
    result.validate()
    return result


def guard(task: Callable[[], None]) -> None:
    """Run a script body: user errors become one line on stderr and exit code 2."""
    try:
        task()
    except FtcoreError as e:
        fail(str(e))


SUMMARY_KEYS = ("accuracy", "f1_macro", "roc_auc", "f1_micro", "mse", "pearson", "loss")


class SweepSummary(Callback):
    """At the end of a ``-m`` sweep, write ``summary.csv`` and ``summary.md`` at the sweep root.

    One row per job: its overrides, the selection metric and the headline validation/test metrics,
    best step and training throughput. Jobs without ``metrics.json`` (failed, interrupted) are listed
    with status ``incomplete``.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import csv

        root = Path(config.hydra.sweep.dir)
        rows = []
        for job in sorted(
            (d for d in root.iterdir() if (d / ".hydra").is_dir()), key=lambda d: (len(d.name), d.name)
        ):
            overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
            row = {"job": job.name, "overrides": " ".join(str(o) for o in overrides), "status": "incomplete"}
            if (job / "metrics.json").is_file():
                metrics = json.loads((job / "metrics.json").read_text())
                row["status"] = "done"
                for split in ("val", "test"):
                    for key in SUMMARY_KEYS:
                        if metrics[split].get(key) is not None:
                            row[f"{split}_{key}"] = round(metrics[split][key], 4)
                row["best_step"] = metrics["best_step"]
                row["train_samples_per_s"] = round(metrics["train_samples_per_s"], 1)
            rows.append(row)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with open(root / "summary.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        # The markdown table keeps only the overrides that differ between jobs (the CSV has them all).
        shared = set.intersection(*(set(row["overrides"].split()) for row in rows)) if rows else set()
        for row in rows:
            row["overrides"] = " ".join(o for o in row["overrides"].split() if o not in shared)
        lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
        (root / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"sweep summary: {root / 'summary.md'}")
