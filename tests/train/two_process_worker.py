"""Run the toy task under torchrun (one process of several); used by test_loop_multiprocess.py."""

import sys
from pathlib import Path

import torch
from accelerate import PartialState

sys.path.insert(0, str(Path(__file__).parent))
from artdiff.train.loop import LoopConfig, run_training  # noqa: E402

from toy_task import ToyTask  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    run_training(LoopConfig(out=Path(sys.argv[1]), max_steps=6, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=2,
                            ema_decay=0.0, progress=False), ToyTask(dropout=0.0))
    state = PartialState()  # the process group the run trained in: each rank says where it stood
    (Path(sys.argv[1]) / f"rank-{state.process_index}-of-{state.num_processes}").touch()
