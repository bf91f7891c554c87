"""hipart-train under torchrun: 2 gloo ranks, weights identical across ranks and equal to one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Trains a small lifter for 3 steps of global batch 8 on fixed data; saves this rank's weights.
SCRIPT = r'''
import sys, torch
from pathlib import Path
from torch.utils.data import Dataset
from hipart.models.config import LifterConfig
from hipart.models.lifter import build_lifter
from hipart.training.loop import LoopConfig
from hipart.training.stages import StageRecipe, train_lifter

class Poses(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(21, 17, 2, generator=g)
        self.y = torch.randn(21, 17, 3, generator=g) * 0.1
    def __len__(self):
        return 21
    def __getitem__(self, i):
        return {"x_s": self.x[i], "pose3d": self.y[i] - self.y[i, :1]}

out = Path(sys.argv[1])
if torch.distributed.is_available() and "WORLD_SIZE" in __import__("os").environ:
    torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
torch.manual_seed(0)
lifter = build_lifter(LifterConfig(num_points=17, kind="mlp", dim=8, width=32, blocks=1, dropout=0.0))
train_lifter(lifter, Poses(), StageRecipe(1e-2, 0.0, 8, 2), LoopConfig(progress=False, max_steps=5),
             out, flip=0.0)
torch.save(lifter.state_dict(), out / f"weights_rank{rank}.pt")
'''


def _env():
    env = os.environ.copy()
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1")
    return env


def test_two_gloo_ranks_match_each_other_and_one_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "multi"
    subprocess.run([sys.executable, str(script), str(single)], check=True, env=_env(), timeout=300)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", "29517", str(script), str(multi)]
    subprocess.run(cmd, check=True, env=_env(), timeout=300, capture_output=True)
    ref = torch.load(single / "weights_rank0.pt", weights_only=True)
    r0 = torch.load(multi / "weights_rank0.pt", weights_only=True)
    r1 = torch.load(multi / "weights_rank1.pt", weights_only=True)
    assert not torch.equal(ref["head.weight"], build_init_head())  # training moved the weights
    for k in ref:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps the ranks identical
        # == one process on the same global batches, up to float summation order (Adam, lr 1e-2, 5 steps: each
        # weight moves up to 5e-2; measured gap 3.6e-6): 2e-5 is 0.04 % of the largest possible move.
        torch.testing.assert_close(r0[k], ref[k], rtol=0, atol=2e-5)
    # only rank 0 wrote the log; the last batch of each epoch (5 samples) splits 3 + 2, weighted by share
    assert len((multi / "lifter.log.jsonl").read_text().splitlines()) == 5


def build_init_head() -> torch.Tensor:
    from hipart.models.config import LifterConfig
    from hipart.models.lifter import build_lifter

    torch.manual_seed(0)
    return build_lifter(LifterConfig(num_points=17, kind="mlp", dim=8, width=32, blocks=1, dropout=0.0)).head.weight


def test_hipart_train_lifter_stage_under_torchrun(tmp_path, data, tiny_model):
    from hipart.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "init.pt", tiny_model)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", "29519", "-m", "hipart.cli.train", "lifter", "--data", str(data), "--out", str(out),
           "--config", "tiny", "--init-from", str(tmp_path / "init.pt"), "--input-2d", "det", "--max-steps", "2",
           "--batch-sizes", "8", "8", "8", "--no-progress", "--device", "cpu"]
    res = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    model, _ = load_checkpoint(out / "hipart.pt")
    assert len((out / "lifter.log.jsonl").read_text().splitlines()) == 2
    for k, v in tiny_model.generator.state_dict().items():  # the generator came from --init-from
        torch.testing.assert_close(model.generator.state_dict()[k], v, msg=k)
