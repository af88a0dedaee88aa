"""Training, fine-tuning and evaluation: SGD with Nesterov momentum 0.9 and weight decay 1e-4 (HALOC's
stated training set-up), a cosine learning-rate schedule over the run (the paper's x0.2 every 55 epochs
assumes 200+ epochs; short runs here use cosine instead). CUDA when present, CPU otherwise. Every random
draw comes from a generator seeded by the caller, so a run is repeatable on one machine."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as functional
from torch import nn

from haloc_core.data import Split


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 1e-4


# The digits demo: training from scratch and the fixed fine-tune every method gets.
DIGITS_TRAIN = TrainConfig(epochs=8, lr=0.05)
DIGITS_FINETUNE = TrainConfig(epochs=2, lr=0.01)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(model: nn.Module, split: Split, config: TrainConfig, seed: int, device: torch.device | None = None,
          progress: Callable[[int, int, float], None] | None = None) -> None:
    """Train ``model`` in place on ``split``; ``progress(epoch, epochs, mean loss)`` after each epoch."""
    device = device or default_device()
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(split) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(config.epochs):
        total, count = 0.0, 0
        for images, labels in split.batches(config.batch_size, generator):
            images, labels = images.to(device), labels.to(device)
            loss = functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + float(loss.detach()) * len(labels), count + len(labels)
        if progress is not None:
            progress(epoch + 1, config.epochs, total / max(count, 1))
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, device: torch.device | None = None, batch_size: int = 512,
             max_batches: int | None = None) -> float:
    """Top-1 accuracy on ``split`` (its first ``max_batches`` batches when given)."""
    device = device or default_device()
    model.to(device).eval()
    correct = seen = 0
    for batch, (images, labels) in enumerate(split.batches(batch_size)):
        if max_batches is not None and batch >= max_batches:
            break
        predictions = model(images.to(device)).argmax(dim=1).cpu()
        correct += int((predictions == labels).sum())
        seen += len(labels)
    return correct / seen if seen else float("nan")
