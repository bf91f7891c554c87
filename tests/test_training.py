import json

import numpy as np
import torch
from torch.utils.data import Dataset

from hipart.checkpoint import save_checkpoint
from hipart.evaluation import evaluate, evaluate_tokenizer, markdown_table
from hipart.metrics import mpjpe
from hipart.models.config import HiPARTConfig
from hipart.models.hipart import HiPART
from hipart.training.loop import LoopConfig
from hipart.training.stages import (
    StageRecipe,
    WithArrays,
    generate_dataset,
    lifter_input,
    tokenize_dataset,
    train_generator,
    train_lifter,
    train_tokenizer,
)


class TinyPoses(Dataset):
    """Structured synthetic samples with the keys of hipart.data's dataset (a few latent factors)."""

    def __init__(self, n: int = 48, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 4, generator=g)
        basis = {k: torch.randn(4, m, generator=g) * 0.2 for k, m in (("s", 34), ("d", 96), ("f", 192), ("p", 51))}
        self.x_s = (z @ basis["s"]).view(n, 17, 2)
        self.x_d = (z @ basis["d"]).view(n, 48, 2)
        self.x_f = (z @ basis["f"]).view(n, 96, 2)
        p = (z @ basis["p"]).view(n, 17, 3)
        self.pose3d = p - p[:, :1]
        self.action = (z[:, 0] > 0).long()

    def __len__(self):
        return len(self.x_s)

    def __getitem__(self, i):
        return {"x_s": self.x_s[i], "x_d": self.x_d[i], "x_f": self.x_f[i], "pose3d": self.pose3d[i],
                "action": self.action[i], "index": torch.tensor(i)}


def _loop(**kw) -> LoopConfig:
    return LoopConfig(progress=False, **kw)


def _losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


def test_three_stages_smoke_losses_decrease(tmp_path):
    torch.manual_seed(0)
    data = TinyPoses()
    model = HiPART(HiPARTConfig.tiny())
    train_tokenizer(model.tokenizer, data, StageRecipe(3e-3, 0.0, 16, 8, warmup_steps=2), _loop(), tmp_path)
    lt = _losses(tmp_path / "tokenizer.log.jsonl")
    assert np.mean(lt[-3:]) < np.mean(lt[:3])
    q_s, q_d = tokenize_dataset(model.tokenizer, data, progress=False)
    assert q_s.shape == (48, 16) and q_d.shape == (48, 48)
    model.sync_codebooks()
    train_generator(model.generator, WithArrays(data, {"q_s": q_s, "q_d": q_d}), StageRecipe(3e-3, 0.0, 16, 8),
                    _loop(), tmp_path)
    lg = _losses(tmp_path / "generator.log.jsonl")
    assert np.mean(lg[-3:]) < np.mean(lg[:3])
    dense, fine = generate_dataset(model, data, progress=False)
    lifted = WithArrays(data, {"gen_dense": dense, "gen_fine": fine})
    train_lifter(model.lifter, lifted, StageRecipe(3e-3, 0.0, 16, 8), _loop(), tmp_path)
    ll = _losses(tmp_path / "lifter.log.jsonl")
    assert np.mean(ll[-3:]) < np.mean(ll[:3])
    metrics = evaluate(model, data, image_width=1000, batch_size=16, action_names=["a", "b"], progress=False)
    assert set(metrics["per_action"]) == {"a", "b"} and metrics["n"] == 48
    # the reported MPJPE is the hand-checked metric on the model's own predictions
    pred = model(data.x_s)["pose3d"]
    assert np.isclose(metrics["mpjpe_mm"], float(mpjpe(pred, data.pose3d).mean() * 1000), rtol=1e-5)
    assert "| mpjpe_mm |" in markdown_table([metrics], ["mpjpe_mm"])
    save_checkpoint(tmp_path / "hipart.pt", model)


def test_resume_equals_uninterrupted_training(tmp_path):
    data = TinyPoses(40)
    recipe = StageRecipe(2e-3, 0.1, 8, 2, warmup_steps=3)

    def fresh():
        torch.manual_seed(1)
        return HiPART(HiPARTConfig.tiny()).tokenizer

    straight = fresh()
    train_tokenizer(straight, data, recipe, _loop(seed=5), tmp_path / "a")
    interrupted = fresh()
    train_tokenizer(interrupted, data, recipe, _loop(seed=5, max_steps=7, save_every=3), tmp_path / "b")
    resumed = fresh()
    train_tokenizer(resumed, data, recipe, _loop(seed=5), tmp_path / "b", resume=True)
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]
    la, lb = _losses(tmp_path / "a" / "tokenizer.log.jsonl"), _losses(tmp_path / "b" / "tokenizer.log.jsonl")
    assert la == lb and len(la) == 10


def test_tokenizer_evaluation_matches_hand_computed_reconstruction():
    torch.manual_seed(0)
    data = TinyPoses(n=20)
    tok = HiPART(HiPARTConfig.tiny()).tokenizer.eval()
    m = evaluate_tokenizer(tok, data, image_width=1000, batch_size=8, progress=False)
    with torch.no_grad():
        q_s, q_d = tok.encode(data.x_f)
        x_d, x_f = tok.decode(q_s, q_d)
    want_d = float((x_d - data.x_d).norm(dim=-1).mean() * 500)
    want_f = float((x_f - data.x_f).norm(dim=-1).mean() * 500)
    assert np.isclose(m["recon_dense_px"], want_d, rtol=1e-5) and np.isclose(m["recon_fine_px"], want_f, rtol=1e-5)
    assert m["codes_used_sparse"] == int(q_s.unique().numel()) and m["n"] == 20


def test_lifter_input_variants_feed_the_right_points():
    b = {"x_s": torch.zeros(2, 17, 2), "gen_dense": torch.ones(2, 48, 2), "gen_fine": 2 * torch.ones(2, 96, 2)}
    assert lifter_input(b, 17).shape == (2, 17, 2)
    x = lifter_input(b, 65)
    assert x.shape == (2, 65, 2) and x[:, 17:].eq(1).all()
    assert lifter_input(b, 161)[:, 65:].eq(2).all()
    for kind, n in (("sparse", 17), ("dense", 65), ("hierarchy", 161)):
        model = HiPART(HiPARTConfig.tiny(kind)).eval()
        with torch.no_grad():
            assert model(torch.rand(3, 17, 2) - 0.5)["pose3d"].shape == (3, 17, 3)
        assert model.lifter.config.num_points == n


def test_lifter_training_with_flip_augmentation_runs_and_learns(tmp_path):
    torch.manual_seed(0)
    data = TinyPoses()
    model = HiPART(HiPARTConfig.tiny("sparse"))
    train_lifter(model.lifter, data, StageRecipe(3e-3, 0.0, 16, 8), _loop(), tmp_path, flip=0.5)
    ll = _losses(tmp_path / "lifter.log.jsonl")
    assert np.mean(ll[-3:]) < np.mean(ll[:3])
