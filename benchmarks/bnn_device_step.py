"""Seconds per SGD step of the BNN's SWAG training (Boston split 0, 1 x 50 units, batch 32) on each device named,
measured in one process so the devices are compared on the same machine (benchmarks/RESULTS.md, "On an NVIDIA
H100"). The first row of each device includes its start-up.

    python benchmarks/bnn_device_step.py cuda cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from pyrozoo.models.bnn import train_bnn, uci_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devices", nargs="+", help="cpu, cuda, cuda:N")
    parser.add_argument("--epochs", type=int, nargs="+", default=[20, 120], help="SGD epochs before the SWA phase")
    parser.add_argument("--swa-epochs", type=int, default=20)
    args = parser.parse_args()
    split = uci_split("boston", 0, test_fraction=0.1)
    print("| device | epochs (SGD + SWA) | steps | wall s | ms/step | torch threads |")
    print("|---|---|---|---|---|---|")
    for dev in args.devices:
        X, y = split.X_train.to(dev), split.y_train.to(dev)
        for epochs in args.epochs:
            t0 = time.perf_counter()
            train_bnn(X, y, epochs=epochs, swa_epochs=args.swa_epochs, seed=0, device=dev)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            steps = (epochs + args.swa_epochs) * -(-X.shape[0] // 32)
            print(f"| {dev} | {epochs} + {args.swa_epochs} | {steps} | {wall:.2f} | {1e3 * wall / steps:.3f} | "
                  f"{torch.get_num_threads()} |", flush=True)


if __name__ == "__main__":
    main()
