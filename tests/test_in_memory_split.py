"""The in-memory training split: same samples as the per-sample dataset, deterministic noise, batched gather."""

from __future__ import annotations

import numpy as np
import torch

from hipart.data.dataset import HierarchicalPoseDataset, InMemorySplit
from hipart.training.loop import collate


def test_gt_and_det_batches_equal_the_per_sample_dataset(data):
    for input_2d in ("gt", "det"):
        ref = HierarchicalPoseDataset(data, "train", input_2d=input_2d)
        mem = InMemorySplit(data, "train", input_2d, subsample=2)
        assert len(mem) == len(range(0, len(ref), 2))
        idx = [0, 3, len(mem) - 1]
        got = mem.batch(idx)
        want = collate([ref[2 * i] for i in idx])
        for k in ("x_s", "conf", "x_d", "x_f", "pose3d", "action", "index"):
            torch.testing.assert_close(got[k], want[k].to(got[k].dtype), rtol=1e-6, atol=1e-6, msg=k)


def test_noisy_batches_are_fresh_per_epoch_and_repeatable(data):
    mem = InMemorySplit(data, "train", "noisy", seed=3).add(extra=np.arange(len(InMemorySplit(data, "train"))))
    a = mem.batch([1, 2, 5])
    assert torch.equal(mem.batch([1, 2, 5])["x_s"], a["x_s"])
    torch.testing.assert_close(a["extra"], torch.tensor([1, 2, 5]))
    mem.set_epoch(1)
    b = mem.batch([1, 2, 5])
    assert not torch.equal(a["x_s"], b["x_s"])
    err = (b["x_s"] - mem.batch([1, 2, 5])["x_s"]).abs().max()
    assert err == 0
    clean = InMemorySplit(data, "train", "gt").batch([1, 2, 5])["x_s"]
    assert 0 < (b["x_s"] - clean).abs().mean() < 0.1  # noise of a few px on the normalised scale
