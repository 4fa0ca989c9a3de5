"""Continue pretraining an encoder with masked-LM on unlabelled text: ``python scripts/pretrain.py
[corpus=<mix>] [key=value ...]``, then fine-tune it with ``python scripts/train.py model.path=<run>/model``.

Writes the Hydra run directory (see ftcore/train/pretrain.py), ``model/`` last. ``resume=<run dir>``
continues a stopped run in its own directory.
"""

import sys

from hydra.core.hydra_config import HydraConfig

from ftcore import cli
from ftcore.train.pretrain import pretrain


def task(cfg) -> float:
    """One pretraining job; returns the best validation value of ``trainer.metric``."""
    result = pretrain(cli.to_config(cfg), HydraConfig.get().runtime.output_dir)
    if result is None:
        sys.exit(130)  # interrupted; the checkpoint to resume from is saved
    return result["val"][result["metric"]]


if __name__ == "__main__":
    cli.resume_in_place(sys.argv)  # a resumed run continues in the directory it came from
    cli.main(task, config_name="pretrain")
