"""Train Lite-Mono (Zhang et al., CVPR 2023) or one of its extensions.

Takes upstream's command line (``--data_path``, ``--split``, ``--model``, ``--lr`` six numbers,
``--num_epochs``, ``--batch_size``, ``--mypretrain`` ...) plus ``--config <yaml>`` and the options
in ``litemono/options.py``. Examples::

    python train.py --config configs/kitti/01_baseline.yaml --data_path kitti_data
    python train.py --model_name run1 --resume auto          # continue run1 where it stopped
    torchrun --nproc_per_node 4 train.py --batch_size 4 ...  # 4 GPUs, global batch 16

Under torchrun ``--batch_size`` is per process. Exit codes: 0 done, 2 bad options or input
(one line ``train.py: error: ...``; ``--debug`` shows the traceback), 3 the loss became NaN/inf.
"""
import os
import sys

import torch.distributed as dist

from litemono.config import parse_config
from litemono.engine import TrainingDiverged, train
from litemono.errors import cli

EXIT_DIVERGED = 3


@cli("train.py")
def main(argv=None) -> int:
    cfg = parse_config(argv, description=__doc__.splitlines()[0])
    try:
        result = train(cfg)
    except TrainingDiverged as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"finished at epoch {result.epoch}, step {result.step}; run folder {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
