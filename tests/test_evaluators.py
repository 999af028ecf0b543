"""Evaluators: counting conventions, the latency protocol, zero-cost proxies, data and training."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import nas
from evaluators.cost import count_params, fvcore_macs, measure_cost
from evaluators.data import Dataset, DatasetError, dataset_num_classes, load_dataset, prepare
from evaluators.latency import measure_latency, quantile_ci
from evaluators.proxies import ZERO_COST_PROXIES, score_proxy
from evaluators.threads import torch_threads
from evaluators.train import ProxyTrainer, TrainConfig, train_proxy

TINY = "poolformer_s12"


def _tiny_arch():
    """poolformer_s12 at a tenth of its widths: seconds to train on 2 cores."""
    arch = nas.get_arch(TINY)
    stages = tuple(s.__class__(s.block, 1, max(16, s.width // 8), s.stride, s.params, s.embed) for s in arch.stages)
    return arch.replace(stem=arch.stem.__class__(arch.stem.type, stages[0].width, arch.stem.params), stages=stages)


def test_sdpa_handle_counts_attention():
    class Attn(torch.nn.Module):
        def forward(self, x):
            q = k = v = x.view(1, 3, 197, 64)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    assert fvcore_macs(_AsImage(Attn()), 1) == 3 * 197 * 197 * 128


class _AsImage(torch.nn.Module):
    """Feeds a fixed tensor to the wrapped module whatever image fvcore passes."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, image):
        return self.inner(torch.ones(1, 3 * 197 * 64) + image.sum())


def test_analytic_matches_fvcore_and_is_faster():
    arch = nas.get_arch(TINY)
    a = measure_cost(arch, counter="analytic")
    f = measure_cost(arch, counter="fvcore")
    assert (a.params, a.macs) == (f.params, f.macs)
    assert a.count_seconds * 100 < f.count_seconds


def test_latency_protocol_records_everything():
    rep = measure_latency(_tiny_arch(), resolution=32, min_seconds=1, max_seconds=3)
    assert rep.latency_ms > 0 and rep.ci_low_ms <= rep.latency_ms <= rep.ci_high_ms
    assert rep.p25_ms <= rep.median_ms <= rep.p75_ms and rep.latency_ms <= rep.median_ms
    assert rep.runs >= 15 and rep.threads == 1 and rep.batch == 1 and rep.resolution == 32
    assert rep.backend == "torch" and rep.device.startswith("cpu") and "torch" in rep.versions


def test_latency_onnxruntime_backend():
    rep = measure_latency(_tiny_arch(), resolution=32, backend="onnxruntime", min_seconds=1, max_seconds=3)
    assert rep.latency_ms > 0 and rep.backend == "onnxruntime" and "onnxruntime" in rep.versions


def test_quantile_ci_is_an_interval_around_the_quantile():
    samples = [float(i) for i in range(100, 0, -1)]
    med, lo, hi = quantile_ci(samples, 0.5)
    assert lo < med < hi and med == 50.5
    p10, lo, hi = quantile_ci(samples, 0.1)
    assert lo < p10 < hi and p10 == 10.9 and hi < 20  # interval from the binomial order statistics


@pytest.fixture(scope="module")
def fmnist():
    return load_dataset("fashion-mnist")


def test_fashion_mnist_loads(fmnist):
    assert fmnist.train_x.shape == (60000, 1, 28, 28) and fmnist.test_x.shape == (10000, 1, 28, 28)
    assert fmnist.num_classes == 10 and fmnist.train_y.max() == 9
    x = prepare(fmnist.train_x[:4], 32)
    assert x.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("proxy", ZERO_COST_PROXIES)
def test_proxy_scores_change_with_the_model(fmnist, proxy):
    sub = fmnist.subset(32, 1)
    x = prepare(sub.train_x, 32)
    small = _tiny_arch()
    wide = small.replace(stages=tuple(s.__class__(s.block, s.depth + 1, s.width * 2, s.stride, s.params, s.embed)
                                      for s in small.stages),
                         stem=small.stem.__class__(small.stem.type, small.stages[0].width * 2, small.stem.params))
    a = score_proxy(small, proxy, x, sub.train_y, 10).score
    b = score_proxy(wide, proxy, x, sub.train_y, 10).score
    assert np.isfinite(a) and np.isfinite(b) and a != b
    assert score_proxy(small, proxy, x, sub.train_y, 10).score == pytest.approx(a, rel=1e-6)  # seeded


def test_training_beats_chance_and_is_deterministic(fmnist):
    cfg = TrainConfig(epochs=2, resolution=32, train_size=3000, val_size=500, batch_size=64, lr=3e-3)
    first = train_proxy(_tiny_arch(), fmnist, cfg)
    assert first.accuracy > 0.5, first  # chance is 0.1
    assert len(first.history) == 2 and first.images_per_second > 0
    again = train_proxy(_tiny_arch(), fmnist, cfg)
    assert again.history == first.history


def test_validation_split_is_held_out_of_the_training_split(fmnist):
    train, val = fmnist.split_validation(500, seed=3, train_size=2000)
    assert len(train) == 2000 and len(val) == 500
    assert not set(train.index.tolist()) & set(val.index.tolist())  # never trained on
    assert torch.equal(val.x, fmnist.train_x[val.index]) and torch.equal(val.y, fmnist.train_y[val.index])
    assert val.source == "train split, 500 held-out images, seed 3"
    again_train, again_val = fmnist.split_validation(500, seed=3)  # the held-out images do not depend on train_size
    assert torch.equal(again_val.index, val.index) and len(again_train) == 60000 - 500
    assert not torch.equal(fmnist.split_validation(500, seed=4)[1].index, val.index)
    with pytest.raises(DatasetError, match="val_size must be between 1 and 59999"):
        fmnist.split_validation(60000)
    with pytest.raises(DatasetError, match="train_size must be between 1 and 59500"):
        fmnist.split_validation(500, train_size=59501)


def test_proxy_training_never_touches_the_test_split(fmnist):
    """Selection scores come from held-out training images: a data set without a test split trains
    and validates the same, and the validation images are those of the seeded split."""
    cfg = TrainConfig(epochs=1, resolution=32, train_size=512, val_size=256, batch_size=64, seed=5)
    no_test = Dataset(fmnist.name, fmnist.train_x, fmnist.train_y, fmnist.test_x[:0], fmnist.test_y[:0], fmnist.classes)
    result = train_proxy(_tiny_arch(), no_test, cfg)
    assert result.history == train_proxy(_tiny_arch(), fmnist, cfg).history and result.accuracy > 0.2
    assert result.to_dict()["validation"] == "train split, 256 held-out images, seed 5"
    trainer = ProxyTrainer(_tiny_arch(), fmnist, cfg)
    _, val = fmnist.split_validation(256, seed=5)
    assert torch.equal(trainer.val_x, prepare(val.x, 32, trainer.mean, trainer.std))
    assert torch.equal(trainer.val_y, val.y)
    assert 0 <= trainer.test_accuracy(size=200) <= 1  # the test split, measured apart


def test_proxy_trainers_keep_their_own_random_streams(fmnist):
    """Interleaved trainers (as in a worker) score as they do alone; the global RNG is untouched."""
    cfg = TrainConfig(epochs=2, resolution=32, train_size=128, val_size=64, batch_size=32)
    arch = nas.scale_widths(nas.get_arch("mobilevit_xxs"), 0.25)  # dropout draws random numbers every step
    alone = ProxyTrainer(arch, fmnist, cfg)
    alone_history = [alone.run_epoch() for _ in range(2)]
    alone_state = alone.model.state_dict()
    before = torch.get_rng_state()
    a, b = ProxyTrainer(arch, fmnist, cfg), ProxyTrainer(arch, fmnist, TrainConfig(**{**cfg.__dict__, "seed": 1}))
    for _ in range(2):
        a.run_epoch(), b.run_epoch()
    assert a.history == alone_history
    assert all(torch.equal(v, alone_state[k]) for k, v in a.model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), before)


def test_proxy_training_borrows_the_thread_count(fmnist):
    seen = []
    cfg = TrainConfig(epochs=1, resolution=32, train_size=128, val_size=64, batch_size=64, threads=1)
    with torch_threads(2):
        trainer = ProxyTrainer(_tiny_arch(), fmnist, cfg)
        trainer.model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
        trainer.run_epoch()
        assert torch.get_num_threads() == 2  # restored
    assert seen and set(seen) == {1}


def test_training_at_reduced_width(fmnist):
    cfg = TrainConfig(epochs=1, resolution=32, train_size=256, val_size=64, batch_size=64)
    full = ProxyTrainer(_tiny_arch(), fmnist, cfg)
    half = ProxyTrainer(_tiny_arch(), fmnist, TrainConfig(**{**cfg.__dict__, "width_mult": 0.5}))
    assert count_params(half.model) < 0.5 * count_params(full.model)
    assert 0 <= half.run_epoch() <= 1


def test_cifar10_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, 20))}, f)
    data = load_dataset(f"cifar10:{root}")
    assert data.train_x.shape == (100, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    (root / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset(f"cifar10:{root}")


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.classes == ("cat", "dog") and len(data.train_y) + len(data.test_y) == 10
    assert data.train_x.shape[1:] == (3, 64, 64)
    assert dataset_num_classes(f"folder:{tmp_path}") == 2  # counted without reading an image
    for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "b", "c"))):
        for cls in classes:
            (tmp_path / "split" / split / cls).mkdir(parents=True)
    assert dataset_num_classes(f"folder:{tmp_path / 'split'}") == 3
    assert dataset_num_classes("fashion-mnist") == 10 and dataset_num_classes("cifar10:/anywhere") == 10


@pytest.mark.parametrize("spec", ["nope", "cifar10", "folder:/does/not/exist", "fashion-mnist:/does/not/exist"])
def test_bad_dataset_specs(spec):
    with pytest.raises(DatasetError):
        load_dataset(spec)
    if spec != "cifar10" and not spec.startswith("fashion"):
        with pytest.raises(DatasetError):
            dataset_num_classes(spec)


def test_adamw_decays_only_matrices_and_steps_as_the_per_tensor_loop():
    """The one optimiser of proxy, supernet and `nas train` runs: no weight decay on norms and
    biases, fused where torch can, and the same step as torch's plain AdamW with those groups."""
    from evaluators.train import adamw

    torch.manual_seed(0)
    model = nas.build_model(_tiny_arch(), 10)
    plain = [p.detach().clone().requires_grad_() for p in model.parameters()]
    for p, q in zip(model.parameters(), plain):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    opt = adamw(model.parameters(), lr=1e-2, weight_decay=0.05)
    decayed, kept = opt.param_groups
    assert all(p.ndim > 1 for p in decayed["params"]) and decayed["weight_decay"] == 0.05
    assert kept["params"] and all(p.ndim <= 1 for p in kept["params"]) and kept["weight_decay"] == 0.0
    assert opt.defaults["fused"] == (tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4))
    reference = torch.optim.AdamW([{"params": [q for q in plain if q.ndim > 1], "weight_decay": 0.05},
                                   {"params": [q for q in plain if q.ndim <= 1], "weight_decay": 0.0}], lr=1e-2)
    for _ in range(3):
        opt.step()
        reference.step()
    for p, q in zip(model.parameters(), plain):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
