"""Measure how the inference batch size changes the time of one teacher pass on this machine.

The teacher-output cache runs the teacher once over a dataset (``distill_lib.core.cache``); that
pass is the first sweep's largest single cost, and its speed on a CPU depends on the batch: a
batch whose activations outgrow the CPU's caches is slower per image than a smaller one (the
first conv of the CNN teacher writes 32 x 28 x 28 floats, 100 kB, per image: 12.8 MB for 128
images, 103 MB for 1024). The candidates are timed in turns (each round runs every candidate once,
in a rotated order), so load from other processes falls on all of them alike. Each pass is timed
twice: wall seconds, and the CPU seconds this process used (``time.process_time``), which other
processes competing for the cores inflate far less. The script prints each candidate's medians and
their ratio to the fastest, and with ``--out`` writes them as JSON, the record that
``distill_lib.core.evaluate.INFERENCE_BATCH`` quotes. The logits do not depend on the batch
size (``tests/test_inference.py``): the choice is about speed only. Usage:
    python benchmarks/inference_batch.py [--threads 2] [--rounds 5] [--device cpu] [--out FILE]
"""
import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import distill_lib as dl  # first: it sets OMP_WAIT_POLICY=PASSIVE, which counts only before torch loads
import torch  # after distill_lib, see above

from distill_lib.core.results import write_json_atomic

CANDIDATES = (64, 128, 256, 512, 1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timings per candidate (default 5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the timings here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = dl.resolve_device(args.device)
    images = dl.load_dataset("fashion-mnist-mini").images
    teacher, _ = dl.get_teacher("quick", device=device)
    dl.predict(teacher, images[:1024], batch_size=256, device=device)  # warm-up: allocator, kernels
    seconds = {clock: {size: [] for size in CANDIDATES} for clock in ("wall", "cpu")}
    for round_ in range(args.rounds):
        shift = round_ % len(CANDIDATES)
        for size in CANDIDATES[shift:] + CANDIDATES[:shift]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            dl.predict(teacher, images, batch_size=size, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds["wall"][size].append(time.perf_counter() - wall)
            seconds["cpu"][size].append(time.process_time() - cpu)
    medians = {clock: {size: statistics.median(t) for size, t in times.items()} for clock, times in seconds.items()}
    best = {clock: min(m, key=m.get) for clock, m in medians.items()}
    print(f"teacher pass over {len(images)} images on {device}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds; median seconds (ratio to the fastest batch):")
    for size in CANDIDATES:
        print(f"  batch {size:5d}: " + "   ".join(
            f"{clock} {medians[clock][size]:6.2f} s ({medians[clock][size] / medians[clock][best[clock]]:.2f}x)"
            for clock in medians) + "   all wall: " + " ".join(f"{t:.2f}" for t in seconds["wall"][size]))
    if args.out is not None:
        record = {"best": best, "median_s": _rounded(medians), "seconds": _rounded(seconds), "device": str(device),
                  "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
                  "processor": _processor(), "images": len(images), "rounds": args.rounds,
                  "versions": {"torch": torch.__version__, "distill_lib": dl.__version__}}
        write_json_atomic(args.out, record)
        print(f"written {args.out}")


def _rounded(tree):
    if isinstance(tree, dict):
        return {key: _rounded(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_rounded(value) for value in tree]
    return round(tree, 3)


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
