"""Two CPU processes (torchrun, gloo) give the weights of one process at the same global batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from artdiff.train.loop import LoopConfig, run_training

from toy_task import ToyTask


def test_two_processes_match_one(tmp_path):
    one = run_training(LoopConfig(out=tmp_path / "one", max_steps=6, batch_size=8, grad_accum=2, lr=1e-2,
                                  warmup_steps=2, ema_decay=0.0, progress=False), ToyTask(dropout=0.0))
    worker = Path(__file__).parent / "two_process_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free loopback port, given explicitly rather than left to rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(worker), str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # one group of two, not two lone processes that each trained (and saved) a whole run
    assert sorted(p.name for p in (tmp_path / "two").glob("rank-*")) == ["rank-0-of-2", "rank-1-of-2"]
    single = load_file(str(one.model_dir / "model.safetensors"))
    double = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key, value in single.items():
        assert torch.allclose(value, double[key], atol=1e-6), key
    assert not torch.equal(single["0.weight"], ToyTask(dropout=0.0).model.state_dict()["0.weight"])  # it trained
