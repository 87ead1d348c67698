"""The encoder on a GPU machine, next to its CPU: one prepared script, under 5 minutes.

Runs the bundle's encoder.onnx with every onnxruntime execution provider the machine's
Python onnxruntime offers (CUDA when it has it, always CPU), and, when a PyTorch checkpoint
of the same weights is at hand and CUDA is present, the same encoder in PyTorch on the GPU.
Each runner's embeddings are checked against the bundle's PyTorch reference embeddings
before it is timed. Writes gpu-<card>.json and .md into --out (default bench/results).

    python3 bench/gpu/encoder_gpu.py [--checkpoint training/runs/mrl-<key>.pt] [--out DIR]

Uses only the machine's own packages (numpy, onnxruntime, optionally torch): a GPU image
has no registry to install from.
"""
from __future__ import annotations

import argparse
import ctypes.util
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCHES = [1, 8, 64, 256, 1024]


def load_bundle(path: str) -> tuple[dict, np.ndarray, np.ndarray]:
    meta = json.load(open(os.path.join(path, "model.json")))
    count = meta["test_slice"]["count"]
    # The test slice's pixels as the tensors the reference embeddings were made from: rescaled only
    # (model.json `preprocess.rescale_factor`; older bundles: `input.scale` and `input.offset`).
    _, _, h, w = meta["input"]["shape"] if "shape" in meta["input"] else (1, 1, meta["input"]["height"], meta["input"]["width"])
    scale = meta.get("preprocess", {}).get("rescale_factor", meta["input"].get("scale"))
    offset = meta["input"].get("offset", 0.0)
    raw = np.fromfile(os.path.join(path, meta["test_slice"]["file"]), dtype=np.uint8)
    images = raw[: count * h * w].reshape(count, 1, h, w).astype(np.float32) * np.float32(scale) + np.float32(offset)
    ref = json.load(open(os.path.join(path, "reference-embeddings.json")))
    return meta, images[ref["slice_indices"]], np.asarray(ref["embeddings"], dtype=np.float32)


def throughput(run, images: np.ndarray, seconds: float) -> list[dict]:
    """Images per second at each batch size, one batch after another (batches cycle the slice)."""
    out = []
    for batch in BATCHES:
        x = np.resize(images, (batch, *images.shape[1:]))
        run(x)  # warm-up (CUDA: kernel selection, allocations)
        run(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            run(x)
            done += batch
        out.append({"batch": batch, "images_per_second": done / (time.perf_counter() - start)})
    return out


def ort_runner(encoder: str, provider: str, meta: dict):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(encoder, opts, providers=[provider])
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} asked for, session runs on {session.get_providers()}")
    name = meta["input"]["name"]
    return lambda x: session.run(None, {name: x})[0]


def torch_runner(checkpoint: str, meta: dict, tf32: bool):
    import torch
    # PyTorch convolves in TF32 on Ampere and later by default: faster, about 1e-3 off fp32.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    sys.path.insert(0, ROOT)
    from training.model import Classifier

    model = Classifier(meta["heads"]["type"], meta["nesting"], len(meta["labels"]))
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state"])  # our own training output
    encoder = model.encoder.eval().cuda()

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        # Host to device and back included, as a service would pay it.
        return encoder(torch.from_numpy(x).cuda(non_blocking=True)).cpu().numpy()

    return run


def gpu_name() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
        if names.strip():
            return names.splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "no GPU visible"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=os.path.join(ROOT, "models", "fashion-mnist-mrl"))
    ap.add_argument("--checkpoint", help="PyTorch checkpoint of the bundle's weights (training/runs/…)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()

    meta, ref_images, ref_embeddings = load_bundle(args.bundle)
    encoder = os.path.join(args.bundle, "encoder.onnx")
    card = gpu_name()
    result = {
        "card": card,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        # Where a CUDA provider library would have to come from for onnxruntime(-node).
        "cuda_provider_libraries": sorted(set(glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime_providers_cuda.so*"))
                                              + glob.glob("/usr/local/lib/**/libonnxruntime_providers_cuda.so*", recursive=True))),
        "cudnn": ctypes.util.find_library("cudnn"),
        "model": meta["name"],
        "runners": [],
    }
    runners = [(f"onnxruntime {p}", lambda p=p: ort_runner(encoder, p, meta))
               for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    if args.checkpoint and card != "no GPU visible":
        runners += [(f"pytorch cuda {'tf32' if tf32 else 'fp32'}", lambda tf32=tf32: torch_runner(args.checkpoint, meta, tf32))
                    for tf32 in (False, True)]
    for label, make in runners:
        try:
            run = make()
            diff = float(np.abs(run(ref_images) - ref_embeddings).max())
            entry = {"runner": label, "max_abs_diff_vs_reference": diff, "points": throughput(run, ref_images, args.seconds)}
        except Exception as e:  # one runner failing (a provider that cannot load) must not lose the others
            result.setdefault("failures", []).append({"runner": label, "error": f"{type(e).__name__}: {e}"})
            print(f"{label}: failed: {e}", flush=True)
            continue
        result["runners"].append(entry)
        print(f"{label}: max |Δ| vs reference {diff:.2e}; " +
              ", ".join(f"b{p['batch']} {p['images_per_second']:.0f}/s" for p in entry["points"]), flush=True)

    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"gpu-{slug}.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [f"# Encoder on {card}", "",
             f"onnxruntime {result['onnxruntime']} (Python), providers offered: {', '.join(result['onnxruntime_providers'])}; "
             f"CUDA provider libraries found: {', '.join(result['cuda_provider_libraries']) or 'none'}; "
             f"{result['cpu_cores']} CPU cores.", "",
             "| runner | max abs diff vs reference | " + " | ".join(f"batch {b} (images/s)" for b in BATCHES) + " |",
             "| --- | --- | " + " | ".join("---" for _ in BATCHES) + " |"]
    for r in result["runners"]:
        lines.append(f"| {r['runner']} | {r['max_abs_diff_vs_reference']:.1e} | " +
                     " | ".join(f"{p['images_per_second']:.0f}" for p in r["points"]) + " |")
    lines += [f"\n{f['runner']} failed: {f['error']}" for f in result.get("failures", [])]
    with open(os.path.join(args.out, f"gpu-{slug}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
