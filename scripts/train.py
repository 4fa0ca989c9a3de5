"""Fine-tune an encoder: ``python scripts/train.py [+exp=<preset>] [group=option] [key=value ...]``.

Writes the Hydra run directory (see ftcore/train/experiment.py). ``resume=<run dir>`` continues a
stopped run in its own directory; ``-m`` runs a sweep.
"""

import sys

from hydra.core.hydra_config import HydraConfig

from ftcore import cli
from ftcore.train.experiment import train


def task(cfg) -> float:
    """One training job; returns the best validation value of ``trainer.metric`` (what a sweeper optimises)."""
    config = cli.to_config(cfg)
    result = train(config, HydraConfig.get().runtime.output_dir)
    if result is None:
        sys.exit(130)  # interrupted; the checkpoint to resume from is saved
    return result["val"][result["metric"]]


if __name__ == "__main__":
    cli.resume_in_place(sys.argv)  # a resumed run continues in the directory it came from
    cli.main(task)
