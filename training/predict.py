"""Batch inference helpers shared by training (evaluation) and export."""
from __future__ import annotations

import numpy as np
import torch

from .model import Classifier


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]: the bundle's input contract."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


@torch.no_grad()
def predict(model: Classifier, images: np.ndarray, batch: int = 1000) -> list[np.ndarray]:
    """Per nesting size, the softmax probabilities (n, classes)."""
    model.eval()
    outs = [model(to_tensor(images[i:i + batch])) for i in range(0, len(images), batch)]
    return [torch.cat([o[k] for o in outs]).softmax(1).numpy() for k in range(len(model.nesting))]
