"""Time one temperature sweep done the common way and through distill_lib, side by side.

(a) the common way: a torchvision-style dataset (uint8 image -> PIL -> ToTensor per sample), a
    DataLoader, and the teacher run on every batch of every run;
(b) distill_lib: data resident in one tensor, index-slice batches, and the teacher's logits
    computed once (at the measured inference batch, ``core.evaluate.INFERENCE_BATCH``) and shared
    by every run of the sweep. The sweep starts with an EMPTY teacher-output cache, in memory and
    on disk: it pays its one teacher pass.

Same data (the bundled mini Fashion-MNIST), same teacher and student architectures, same loss,
optimiser, batch size and epochs. Prints both wall times, their ratio and where each one's time
went: (a) split into loading batches, the teacher's forward passes and the student's steps;
(b) per run into its epochs and what is outside them (the teacher pass in the first run, checks
and hashing in every run). Timing starts after a warm-up of each path. Both paths run in this
one process, one after the other, so a machine shared with other work slows both; repeat it and
compare ratios, not seconds (the CPU-seconds ratio it also prints moves less). Usage:
    python benchmarks/temperature_sweep.py [--temperatures 1 2 4] [--epochs 3] [--threads 2] [--out FILE]
"""
import argparse
import atexit
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import distill_lib as dl  # first: it sets OMP_WAIT_POLICY=PASSIVE, which counts only before torch loads
import torch  # after distill_lib, see above
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from distill_lib.core.evaluate import inference_batch
from distill_lib.core.results import write_json_atomic
from distill_lib.methods import kd_loss


class PerSampleImages(torch.utils.data.Dataset):
    """What torchvision's MNIST-style datasets do per item: uint8 array -> PIL -> tensor."""

    def __init__(self, dataset):
        self.images = (dataset.images[:, 0] * 255).round().to(torch.uint8).numpy()
        self.labels = dataset.labels.tolist()
        self.to_tensor = ToTensor()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.to_tensor(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def common_way_sweep(teacher, train_set, temperatures, args, device) -> dict:
    """Returns the seconds spent loading batches, in the teacher and in the student's steps (on a
    GPU the split is only indicative: kernels run asynchronously)."""
    loader = DataLoader(PerSampleImages(train_set), batch_size=args.batch_size, shuffle=True)
    teacher.eval()
    spent = {"loading": 0.0, "teacher": 0.0, "student": 0.0}
    for temperature in temperatures:
        student = dl.build_model(args.student, seed=0).to(device)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=5e-4)
        for _ in range(args.epochs):
            batches, clock = iter(loader), time.perf_counter()
            for images, labels in batches:
                images, labels = images.to(device), labels.to(device)
                clock = _lap(spent, "loading", clock)
                with torch.no_grad():
                    teacher_logits = teacher(images)
                clock = _lap(spent, "teacher", clock)
                loss = kd_loss(student(images), teacher_logits, labels, temperature=temperature, alpha=0.9)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                clock = _lap(spent, "student", clock)
    return spent


def _lap(spent: dict, part: str, since: float) -> float:
    now = time.perf_counter()
    spent[part] += now - since
    return now


def distill_lib_sweep(teacher, train_set, temperatures, args, device) -> list:
    """Returns, per run, ``(seconds in its epochs, seconds outside them)``."""
    runs = []
    for temperature in temperatures:
        student = dl.build_model(args.student, seed=0)
        started = time.perf_counter()
        history = dl.distill(student, teacher, train_set, temperature=temperature, alpha=0.9, epochs=args.epochs,
                             batch_size=args.batch_size, lr=1e-3, device=device, schedule="constant", progress="off")
        runs.append((history.seconds, time.perf_counter() - started - history.seconds))
    return runs


def timed(function, *args):
    """(wall seconds, CPU seconds of this process, what ``function`` returned)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--student", default="mlp-small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="also write the timings here as JSON (what the README quotes)")
    args = parser.parse_args()
    if args.out is not None and not args.out.parent.is_dir():  # refuse before minutes of work, not after
        parser.error(f"--out {args.out}: its folder {args.out.parent} does not exist")
    torch.set_num_threads(args.threads)
    device = dl.resolve_device(args.device)
    train_set = dl.load_dataset("fashion-mnist-mini")
    teacher, info = dl.get_teacher("quick", device=device)
    teacher.to(device)
    print(f"device {device}, {torch.get_num_threads()} threads; teacher {info['checkpoint']}; student {args.student}; "
          f"{len(train_set)} images; T in {args.temperatures}; {args.epochs} epochs per run")
    # teacher outputs go to a fresh folder: the measured sweep starts with nothing on disk either,
    # and the user's own cache (~/.cache/distill_lib) is left alone
    os.environ["DISTILL_LIB_CACHE"] = tempfile.mkdtemp(prefix="temperature-sweep-")
    atexit.register(shutil.rmtree, os.environ["DISTILL_LIB_CACHE"], ignore_errors=True)
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    common_way_sweep(teacher, train_set.subset(range(args.batch_size)), [1.0], warm, device)  # warm-up
    distill_lib_sweep(teacher, train_set.subset(range(args.batch_size)), [1.0], warm, device)
    dl.clear_cache(disk=True)  # the measured sweep pays its own single teacher pass
    common, common_cpu, spent = timed(common_way_sweep, teacher, train_set, args.temperatures, args, device)
    ours, ours_cpu, runs = timed(distill_lib_sweep, teacher, train_set, args.temperatures, args, device)
    assert dl.cache_info()["misses"] == 1, "the sweep must pay exactly one teacher pass"
    epochs_s, outside_s = sum(e for e, _ in runs), [round(o, 2) for _, o in runs]
    print(f"(a) DataLoader + online teacher: {common:.1f} s: loading {spent['loading']:.1f} s, teacher "
          f"{spent['teacher']:.1f} s, student {spent['student']:.1f} s")
    print(f"(b) distill_lib (cached logits): {ours:.1f} s: epochs {epochs_s:.1f} s; outside the epochs, per run "
          f"(the first holds the teacher pass at batch {inference_batch(device)}): {outside_s} s")
    print(f"speed-up (a)/(b): {common / ours:.1f}x (in CPU seconds of this process, which other processes on "
          f"the machine inflate less: {common_cpu:.1f} / {ours_cpu:.1f} = {common_cpu / ours_cpu:.1f}x)")
    if args.out is not None:
        record = {"common_way_s": round(common, 2), "distill_lib_s": round(ours, 2), "speedup": round(common / ours, 2),
                  "common_way_cpu_s": round(common_cpu, 2), "distill_lib_cpu_s": round(ours_cpu, 2),
                  "speedup_cpu": round(common_cpu / ours_cpu, 2),
                  "common_way_split_s": {k: round(v, 2) for k, v in spent.items()},
                  "distill_lib_epochs_s": round(epochs_s, 2), "distill_lib_outside_epochs_s": outside_s,
                  "inference_batch": inference_batch(device),
                  "device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                  "machine": platform.machine(), "student": args.student, "temperatures": args.temperatures,
                  "epochs": args.epochs, "batch_size": args.batch_size, "images": len(train_set),
                  "versions": {"torch": torch.__version__, "distill_lib": dl.__version__}}
        write_json_atomic(args.out, record)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
