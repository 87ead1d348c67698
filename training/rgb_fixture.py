"""A second image model, of another shape than the bundled ones, for test/rgb-model.test.ts.

    /usr/bin/python3 -m training.rgb_fixture      # from the repository root; rewrites test/fixtures/rgb-fashion/

under a minute on one CPU thread; seeds are fixed and kernels deterministic, so a rerun on the same
machine writes the same files. It is a fixture, not a bundle: nothing under models/ changes, and the
test makes a bundle of it with `mrl import` and `mrl fit`.

* Images: Fashion-MNIST (training/data.py's split) rendered as 28x28 RGB by `render`, an integer rule
  the test repeats exactly: each image's pixel-byte sum s picks a foreground colour FOREGROUND[s % 6]
  and a background BACKGROUND[(s // 6) % 4], and a pixel p of channel c becomes
  (p * fg[c] + (255 - p) * bg[c] + 127) // 255.
* Input: float32 NCHW [batch, 3, 32, 32], as `preprocessor_config.json` makes it from such an image
  (PIL bilinear resize to 32x32, bytes / 255, then per-channel mean and std of the training images);
  the normalisation is not in the graph.
* Encoder: a small CNN trained with the MRL loss (one head per size of NESTING, losses averaged) on
  ENCODER_PER_CLASS training images a class; exported as `model.onnx`, output `embedding` [batch, 64].
* `pytorch-heads.json`: the per-size test accuracy of linear heads PyTorch fits on the frozen
  embeddings, for the test to compare `mrl fit` with. The heads see what `mrl fit --data` fits on:
  the first FIT_PER_CLASS training images of each class, less the validation part that
  `stratifiedSplit` (matryoshka/fit.ts, ported below) holds out at fraction 0.2, seed 0; the same
  objective (mean softmax cross-entropy + L2 / 2 x the squared weights), solved by torch's L-BFGS;
  evaluated on the first TEST_PER_CLASS test images of each class. The test takes both counts from
  this file, so changing them here keeps the two in step.
* `labels.txt`: training/data.py's LABELS, one a line.
* `reference-embeddings.json`: the model's embeddings of the first of those test images of each class
  (their positions in that selection), for a parity check of the TypeScript pipeline against PIL's.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "rgb-fashion")
SIDE = 32
NESTING = [8, 16, 32, 64]
ENCODER_PER_CLASS = 2000
EPOCHS = 4
FIT_PER_CLASS = 300
TEST_PER_CLASS = 100
VAL_FRACTION = 0.2
SPLIT_SEED = 0
L2 = 1e-3
SEED = 0
FOREGROUND = np.array([(230, 60, 40), (250, 200, 30), (60, 180, 75), (0, 130, 200), (145, 30, 180), (240, 240, 240)],
                      dtype=np.int64)
BACKGROUND = np.array([(0, 0, 0), (40, 20, 60), (10, 50, 40), (70, 40, 10)], dtype=np.int64)


def render(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> uint8 (n, 28, 28, 3): the tint rule of the module docstring."""
    s = images.reshape(len(images), -1).astype(np.int64).sum(1)
    fg, bg = FOREGROUND[s % 6][:, None, None, :], BACKGROUND[(s // 6) % 4][:, None, None, :]
    p = images.astype(np.int64)[..., None]
    return ((p * fg + (255 - p) * bg + 127) // 255).astype(np.uint8)


def resized(rgb: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28, 3) -> uint8 (n, 32, 32, 3) by PIL's bilinear filter (`resample` 2 in the config)."""
    return np.stack([np.asarray(Image.fromarray(im).resize((SIDE, SIDE), Image.BILINEAR)) for im in rgb])


def to_input(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """uint8 (n, 32, 32, 3) -> float32 (n, 3, 32, 32): rescale by 1/255, then normalise per channel."""
    x = (pixels.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def first_per_class(split: data.Split, per_class: int) -> data.Split:
    """The first `per_class` images of each class, class by class: what the test reads with loadSplit."""
    idx = np.concatenate([np.nonzero(split.labels == c)[0][:per_class] for c in range(len(data.LABELS))])
    return data.Split(split.images[idx], split.labels[idx])


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """matryoshka/fit.ts `stratifiedSplit`, bit for bit (mulberry32, Fisher-Yates per class): the training indices."""
    mask = 0xFFFFFFFF
    state = seed & mask

    def imul(a: int, b: int) -> int:
        return (a * b) & mask

    def random() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & mask
        t = imul(state ^ (state >> 15), state | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & mask
        return (t ^ (t >> 14)) / 2 ** 32

    validation = np.zeros(len(labels), dtype=bool)
    for cls in sorted(set(labels.tolist())):
        members = np.nonzero(labels == cls)[0].tolist()
        for i in range(len(members) - 1, 0, -1):
            j = int(random() * (i + 1))
            members[i], members[j] = members[j], members[i]
        validation[members[:int(np.floor(fraction * len(members) + 0.5))]] = True
    return np.nonzero(~validation)[0]


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


class Encoder(nn.Module):
    """3x32x32 (normalised) -> 64-d: three conv blocks (16-32-64) and one linear layer, about 100k weights."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*_block(3, 16), *_block(16, 32), *_block(32, 64), nn.Flatten())
        self.project = nn.Linear(64 * 4 * 4, NESTING[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x))


def train_encoder(x: torch.Tensor, y: torch.Tensor, log) -> tuple[Encoder, nn.ModuleList]:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    encoder, heads = Encoder(), nn.ModuleList(nn.Linear(m, len(data.LABELS)) for m in NESTING)
    params = [*encoder.parameters(), *heads.parameters()]
    batch = 128
    steps = len(x) // batch
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, epochs=EPOCHS, steps_per_epoch=steps)
    for epoch in range(EPOCHS):
        encoder.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], x[idx].flip(3), x[idx])
            z = encoder(xb)
            loss = sum(nn.functional.cross_entropy(h(z[:, :m]), y[idx]) for m, h in zip(NESTING, heads)) / len(NESTING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        log(f"epoch {epoch + 1}/{EPOCHS} loss {total / steps:.4f}")
    return encoder.eval(), heads.eval()


def fit_head(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on z: mean cross-entropy + L2 / 2 ||W||^2 (bias unpenalised), in float64."""
    w = torch.zeros(len(data.LABELS), z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(data.LABELS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=2000, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ w.T + b, y) + L2 / 2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    began = time.time()
    log = lambda msg: print(f"[{time.time() - began:6.1f}s] {msg}", flush=True)  # noqa: E731
    ds = data.load_cached(ROOT, os.path.join(ROOT, "training", ".cache"))
    enc_split = first_per_class(ds.train, ENCODER_PER_CLASS)
    enc_pixels = resized(render(enc_split.images))
    scaled = enc_pixels.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = np.round(scaled.mean(0), 4), np.round(scaled.std(0), 4)
    log(f"{len(enc_pixels)} encoder images; mean {mean.tolist()} std {std.tolist()}")
    encoder, train_heads = train_encoder(to_input(enc_pixels, mean, std), torch.from_numpy(enc_split.labels), log)

    fit, test = first_per_class(ds.train, FIT_PER_CLASS), first_per_class(ds.test, TEST_PER_CLASS)
    with torch.no_grad():
        z_fit = encoder(to_input(resized(render(fit.images)), mean, std)).double()
        z_test = encoder(to_input(resized(render(test.images)), mean, std))
    train_idx = torch.from_numpy(stratified_split(fit.labels, VAL_FRACTION, SPLIT_SEED))
    y_fit = torch.from_numpy(fit.labels)[train_idx]
    y_test = torch.from_numpy(test.labels)
    accuracy, trained = {}, {}
    for m, head in zip(NESTING, train_heads):
        w, b = fit_head(z_fit[train_idx, :m], y_fit)
        accuracy[str(m)] = float(((z_test[:, :m].double() @ w.T + b).argmax(1) == y_test).double().mean())
        with torch.no_grad():
            trained[str(m)] = float((head(z_test[:, :m]).argmax(1) == y_test).double().mean())
    log(f"PyTorch heads on frozen embeddings: test accuracy {accuracy}; the training heads: {trained}")

    os.makedirs(OUT, exist_ok=True)
    torch.onnx.export(encoder, torch.zeros(1, 3, SIDE, SIDE), os.path.join(OUT, "model.onnx"),
                      input_names=["input"], output_names=["embedding"], opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}})
    with open(os.path.join(OUT, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "ViTImageProcessor", "do_convert_rgb": True, "do_resize": True,
                   "size": {"height": SIDE, "width": SIDE}, "resample": 2, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean.tolist(),
                   "image_std": std.tolist()}, f, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "labels.txt"), "w") as f:
        f.write("\n".join(data.LABELS) + "\n")
    with open(os.path.join(OUT, "pytorch-heads.json"), "w") as f:
        json.dump({"fit": {"per_class": FIT_PER_CLASS, "val_fraction": VAL_FRACTION, "seed": SPLIT_SEED, "l2": L2,
                           "train": len(train_idx)},
                   "test": {"per_class": TEST_PER_CLASS}, "accuracy": accuracy, "training_heads_accuracy": trained},
                  f, indent=2)
        f.write("\n")
    firsts = [c * TEST_PER_CLASS for c in range(len(data.LABELS))]
    rows = [json.dumps([float(f"{v:.8g}") for v in z]) for z in z_test[firsts].tolist()]
    with open(os.path.join(OUT, "reference-embeddings.json"), "w") as f:
        f.write(f'{{"test_positions": {json.dumps(firsts)},\n "embeddings": [\n  ' + ",\n  ".join(rows) + "\n]}\n")
    log(f"wrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
