"""The encoder CNN and the Matryoshka heads (MRL: one linear head per size; MRL-E: one shared head)."""
from __future__ import annotations

import torch
from torch import nn

# Fashion-MNIST training-set pixel statistics (after scaling to [0, 1]); baked into the
# exported graph so clients only scale bytes by 1/255.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
NESTING = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


class Encoder(nn.Module):
    """28x28x1 in [0, 1] -> `dim`-d embedding. Three conv blocks (32-64-128) and one linear layer:
    sized so an epoch over 55k images takes about 80 s on 2 CPU cores."""

    def __init__(self, dim: int, dropout: float = 0.25):
        super().__init__()
        self.features = nn.Sequential(*_block(1, 32), *_block(32, 64), *_block(64, 128), nn.Flatten(),
                                      nn.Dropout(dropout))
        self.project = nn.Linear(128 * 3 * 3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features((x - PIXEL_MEAN) / PIXEL_STD))


class MRLHeads(nn.Module):
    """One linear classifier per nesting size m, reading z[:, :m]."""

    def __init__(self, nesting: list[int], classes: int):
        super().__init__()
        self.nesting = nesting
        self.heads = nn.ModuleList(nn.Linear(m, classes) for m in nesting)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [h(z[:, :m]) for m, h in zip(self.nesting, self.heads)]


class MRLEHead(nn.Module):
    """MRL-E: one shared weight W (classes x d) and bias; size m uses W[:, :m]."""

    def __init__(self, nesting: list[int], classes: int):
        super().__init__()
        self.nesting = nesting
        self.linear = nn.Linear(nesting[-1], classes)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        w, b = self.linear.weight, self.linear.bias
        return [z[:, :m] @ w[:, :m].T + b for m in self.nesting]


class Classifier(nn.Module):
    """Encoder plus heads; `forward` returns one logits tensor per nesting size."""

    def __init__(self, kind: str, nesting: list[int], classes: int):
        super().__init__()
        self.kind = kind
        self.nesting = nesting
        self.encoder = Encoder(nesting[-1])
        self.heads = MRLEHead(nesting, classes) if kind == "mrl-e" else MRLHeads(nesting, classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.heads(self.encoder(x))
