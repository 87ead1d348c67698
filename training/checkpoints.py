"""Where a trained variant's checkpoint lives: keyed by the variant and its training config."""
from __future__ import annotations

import hashlib
import json
import os


def checkpoint_path(runs: str, name: str, cfg: dict) -> str:
    key = hashlib.sha1(json.dumps({**cfg, "variant": name}, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(runs, f"{name}-{key}.pt")
