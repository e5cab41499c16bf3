"""What ``torch.compile`` costs the classifier's backbone, and after how many training steps it pays.

Runs the same measurement twice in fresh processes that share one new inductor cache folder
(``TORCHINDUCTOR_CACHE_DIR``), as two runs of ``breakhis fit --model.compile true`` would: the first compiles
from nothing (cold), the second finds the compiled kernels in the cache (warm). Each process times, on random
inputs, eager training steps, the first compiled training step (tracing and compiling forward and backward), later
compiled steps, and the first compiled evaluation step (a second graph: evaluation mode, the evaluation batch).
The backbone is compiled as the classifier does it (``backbone.compile(mode=..., dynamic=False)``); a step is
forward (bf16 autocast on CUDA), cross-entropy, backward and AdamW (fused on CUDA), channels-last.

The last line printed is one JSON object (``--out`` writes it too): ``compile_s`` (first compiled training step
minus an eager one), ``eval_compile_s``, ``step_ms`` eager and compiled (medians), and ``break_even_steps``:
``compile_s / (eager - compiled step)``, the training steps after which the cold compilation has paid for itself
(``null`` when compiled steps are not faster).

Usage::

    python benchmarks/compile_cost.py --quick      # CPU: ResNet18-trunk DALA-ResNet, 64 px, batch 16
    python benchmarks/compile_cost.py              # GPU: DALA-ResNet50, 224 px, batch 32 (the paper's)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One process's measurement (the inductor cache folder comes from the environment)."""
    import torch
    import torch.nn.functional as F

    from breakhis_lit.models import DALAResNet, DALAResNet50

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    if args.quick:
        model = DALAResNet(arch="resnet18", num_classes=2, pretrained=False, dropout=0.25, reduction=4)
    else:
        model = DALAResNet50(num_classes=2, pretrained=False, dropout=0.25, reduction=4)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (args.batch,), device=device)
    x_eval = torch.randn(args.eval_batch, 3, args.size, args.size, device=device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def step() -> float:
        sync()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    def evaluate() -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model(x_eval.contiguous(memory_format=torch.channels_last))
        sync()
        return time.perf_counter() - start

    model.train()
    for _ in range(args.warmup):
        step()
    eager = statistics.median(step() for _ in range(args.steps))
    model.compile(mode=args.mode, dynamic=False)
    first = step()
    for _ in range(args.warmup):
        step()
    compiled = statistics.median(step() for _ in range(args.steps))
    model.eval()
    first_eval = evaluate()
    return {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "first_compiled_step_s": round(first, 2),
        "compile_s": round(first - eager, 2),
        "eval_compile_s": round(first_eval, 2),
        "step_ms_eager": round(1000 * eager, 2),
        "step_ms_compiled": round(1000 * compiled, 2),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: ResNet18 trunk, 64 px, batch 16")
    parser.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, ...)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per median (default 20; --quick 5)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size, args.batch, args.eval_batch = (64, 16, 32) if args.quick else (224, 32, 256)
    args.steps = args.steps or (5 if args.quick else 20)
    args.warmup = 2 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--out", str(args.out))]
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="breakhis-inductor-") as cache:
        path = f"{REPO}:{os.environ.get('PYTHONPATH', '')}"
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": path}
        for kind in ("cold", "warm"):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", *forwarded], env=env, capture_output=True,
                                  text=True, cwd=REPO)  # fmt: skip
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                return proc.returncode
            runs[kind] = {**json.loads(proc.stdout.strip().splitlines()[-1]),
                          "process_s": round(time.perf_counter() - start, 1)}  # fmt: skip
            print(f"[compile_cost] {kind}: {runs[kind]}", flush=True)
    cold, warm = runs["cold"], runs["warm"]
    gain_ms = cold["step_ms_eager"] - cold["step_ms_compiled"]
    result = {
        "quick": args.quick,
        "mode": args.mode,
        "batch": args.batch,
        "image_size": args.size,
        "cold": cold,
        "warm": warm,
        "break_even_steps": round(cold["compile_s"] * 1000 / gain_ms) if gain_ms > 0 else None,
        "break_even_steps_warm": round(warm["compile_s"] * 1000 / gain_ms) if gain_ms > 0 else None,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
