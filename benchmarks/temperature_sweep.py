"""Time one temperature sweep done the common way and through distill_lib, side by side.

(a) the common way: a torchvision-style dataset (uint8 image -> PIL -> ToTensor per sample), a
    DataLoader, and the teacher run on every batch of every run;
(b) distill_lib: data resident in one tensor, index-slice batches, and the teacher's logits
    computed once and shared by every run of the sweep.

Same data (the bundled mini Fashion-MNIST), same teacher and student architectures, same loss,
optimiser, batch size and epochs. Prints both wall times and their ratio; timing starts after a
warm-up batch of each path. Usage:
    python benchmarks/temperature_sweep.py [--temperatures 1 2 4 8] [--epochs 2] [--device auto] [--out FILE]
"""
import argparse
import os
import platform
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

import distill_lib as dl
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


def common_way_sweep(teacher, train_set, temperatures, args, device):
    loader = DataLoader(PerSampleImages(train_set), batch_size=args.batch_size, shuffle=True)
    teacher.eval()
    for temperature in temperatures:
        student = dl.build_model(args.student, seed=0).to(device)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=5e-4)
        for _ in range(args.epochs):
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = kd_loss(student(images), teacher_logits, labels, temperature=temperature, alpha=0.9)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()


def distill_lib_sweep(teacher, train_set, temperatures, args, device):
    for temperature in temperatures:
        student = dl.build_model(args.student, seed=0)
        dl.distill(student, teacher, train_set, temperature=temperature, alpha=0.9, epochs=args.epochs,
                   batch_size=args.batch_size, lr=1e-3, device=device, schedule="constant", progress="off")


def timed(function, *args):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--student", default="mlp-small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="also write the timings here as JSON (what the README quotes)")
    args = parser.parse_args()
    if args.out is not None and not args.out.parent.is_dir():  # refuse before minutes of work, not after
        parser.error(f"--out {args.out}: its folder {args.out.parent} does not exist")
    device = dl.resolve_device(args.device)
    train_set = dl.load_dataset("fashion-mnist-mini")
    teacher, info = dl.get_teacher("quick", device=device)
    teacher.to(device)
    print(f"device {device}, {torch.get_num_threads()} threads; teacher {info['checkpoint']}; student {args.student}; "
          f"{len(train_set)} images; T in {args.temperatures}; {args.epochs} epochs per run")
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    common_way_sweep(teacher, train_set.subset(range(args.batch_size)), [1.0], warm, device)  # warm-up
    distill_lib_sweep(teacher, train_set.subset(range(args.batch_size)), [1.0], warm, device)
    dl.clear_cache(disk=True)  # the measured sweep pays its own single teacher pass
    common = timed(common_way_sweep, teacher, train_set, args.temperatures, args, device)
    ours = timed(distill_lib_sweep, teacher, train_set, args.temperatures, args, device)
    print(f"(a) DataLoader + online teacher: {common:.1f} s")
    print(f"(b) distill_lib (cached logits): {ours:.1f} s")
    print(f"speed-up (a)/(b): {common / ours:.1f}x")
    if args.out is not None:
        record = {"common_way_s": round(common, 2), "distill_lib_s": round(ours, 2), "speedup": round(common / ours, 2),
                  "device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                  "machine": platform.machine(), "student": args.student, "temperatures": args.temperatures,
                  "epochs": args.epochs, "batch_size": args.batch_size, "images": len(train_set),
                  "versions": {"torch": torch.__version__, "distill_lib": dl.__version__}}
        write_json_atomic(args.out, record)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
