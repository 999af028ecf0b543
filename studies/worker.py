"""What a worker does: evaluate candidates on data it keeps in memory.

A plain class, so it runs in-process (tests, ``--workers 0``) or as a long-lived Ray actor that
loads the data set once. Candidates arrive as config JSON; training advances one epoch per call
so the driver can stop hopeless candidates between epochs.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Optional

import torch

from evaluators.train import ProxyTrainer, TrainConfig
from nas.config import ArchConfig

TRAIN = "train"


class CandidateWorker:
    def __init__(self, proxy: str, dataset: str, train: TrainConfig, threads: int, latency_resolution: Optional[int] = None,
                 latency_seconds: float = 5.0):
        from evaluators.data import load_dataset

        torch.set_num_threads(threads)
        self.proxy, self.train_cfg, self.threads = proxy, replace(train, threads=threads), threads
        self.data = load_dataset(dataset)
        self.latency_resolution, self.latency_seconds = latency_resolution, latency_seconds
        self.trainers: dict[int, ProxyTrainer] = {}

    def ping(self) -> int:
        return os.getpid()

    def latency(self, arch_json: str) -> dict:
        from evaluators.latency import measure_latency

        arch = ArchConfig.from_json(arch_json)
        rep = measure_latency(arch, self.latency_resolution, threads=self.threads, max_seconds=self.latency_seconds)
        return {"latency_ms": rep.latency_ms, "latency_ci_ms": [rep.ci_low_ms, rep.ci_high_ms],
                "latency_median_ms": rep.median_ms, "latency_device": rep.device, "latency_threads": rep.threads}

    def epoch(self, key: int, arch_json: str) -> dict:
        """Train candidate ``key`` one more epoch (building it on the first call)."""
        trainer = self.trainers.get(key)
        if trainer is None:
            trainer = self.trainers[key] = ProxyTrainer(ArchConfig.from_json(arch_json), self.data, self.train_cfg)
        try:
            acc = trainer.run_epoch()
        except BaseException:
            self.trainers.pop(key, None)
            raise
        done = len(trainer.history) >= self.train_cfg.epochs
        if done:
            self.trainers.pop(key, None)
        return {"accuracy": acc, "epoch": len(trainer.history), "done": done,
                "images_per_second": trainer.images_per_second}

    def drop(self, key: int) -> None:
        self.trainers.pop(key, None)

    def score(self, arch_json: str) -> dict:
        """A zero-cost proxy on a fixed real minibatch."""
        from evaluators.data import channel_stats, prepare
        from evaluators.proxies import score_proxy

        arch = ArchConfig.from_json(arch_json)
        cfg = self.train_cfg
        sub = self.data.subset(cfg.batch_size, 1, seed=cfg.seed)
        mean, std = channel_stats(self.data.train_x)
        x = prepare(sub.train_x, cfg.resolution, mean, std)
        result = score_proxy(arch, self.proxy, x, sub.train_y, self.data.num_classes, seed=cfg.seed)
        return {"accuracy": result.score, "epoch": 0, "done": True}
