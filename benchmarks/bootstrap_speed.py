"""Bootstrap speed: every scalar test metric, all replicates, on one core, for a BreakHis-sized test set.

The default case is the target: 2,000 images of a binary task in 25 groups (patients), 2,000 patient-bootstrap
replicates of all metrics (accuracy ... AUROC, patient accuracy and recognition rate). It also times BCa (which
adds the leave-one-group-out jackknife), the image-level bootstrap and the 8-class task. Each case is timed
``--repeat`` times from the raw arrays (input checks included) and the minimum is reported (a shared CPU's noise
only ever adds time). The last line printed is one JSON object (``--out`` writes it too).

Usage::

    python benchmarks/bootstrap_speed.py                 # the target case and the others, one thread
    python benchmarks/bootstrap_speed.py --only-target   # just the target case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one core, before numpy loads its BLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from breakhis_lit.stats import image_bootstrap, patient_bootstrap  # noqa: E402

TARGET_S = 2.0


def synthetic_test_set(n_images: int, n_groups: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Clustered predictions: each group one patient with its own label and skill."""
    rng = np.random.default_rng(seed)
    group = np.sort(rng.integers(0, n_groups, n_images))
    group[:n_groups] = np.arange(n_groups)
    label = (np.arange(n_groups) % num_classes)[group]
    logits = rng.normal(size=(n_images, num_classes))
    logits[np.arange(n_images), label] += rng.normal(1.5, 1.0, n_groups)[group]
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1).numpy()
    patients = np.array([f"patient{g}" for g in group])
    return probs, label, patients, patients


def time_case(fn, data: tuple[np.ndarray, ...], repeat: int, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*data, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=25)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-target", action="store_true", help="time only the binary patient percentile case")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    cases = [("patient", 2, "percentile")]
    if not args.only_target:
        cases += [("patient", 2, "bca"), ("image", 2, "percentile"), ("patient", 8, "percentile")]
        cases += [("patient", 8, "bca"), ("image", 8, "percentile")]
    timings = []
    for unit, num_classes, method in cases:
        data = synthetic_test_set(args.images, args.groups, num_classes)
        fn = patient_bootstrap if unit == "patient" else image_bootstrap
        seconds = time_case(fn, data, args.repeat, n_resamples=args.resamples, method=method)
        timings.append({"unit": unit, "classes": num_classes, "method": method, "seconds": round(seconds, 4)})
        print(f"{unit:>7} bootstrap  {num_classes} classes  {method:<10}  {seconds:8.3f} s", flush=True)
    target = timings[0]["seconds"]
    result = {
        "images": args.images,
        "groups": args.groups,
        "resamples": args.resamples,
        "threads": 1,
        "machine": platform.processor() or platform.machine(),
        "timings": timings,
        "target_s": TARGET_S,
        "target_met": target < TARGET_S,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
