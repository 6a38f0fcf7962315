"""Seconds per SGD step of the BNN's SWAG training (Boston split 0, 1 x 50 units, batch 32) on each device named,
measured in one process so the devices are compared on the same machine (benchmarks/RESULTS.md, "On an NVIDIA
H100"). The first row of each device includes its start-up.

    python benchmarks/bnn_device_step.py cuda cpu
"""

from __future__ import annotations

import argparse
import time

import _peers
import torch

from pyrozoo.models.bnn import train_bnn, uci_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devices", nargs="+", help="cpu, cuda, cuda:N")
    parser.add_argument("--epochs", type=_peers.int_at_least(0), nargs="+", default=[20, 120],
                        help="SGD epochs before the SWA phase")
    # train_bnn's own minimum: one iterate is collected per SWA epoch and SWAG's moments need two
    parser.add_argument("--swa-epochs", type=_peers.int_at_least(2), default=20,
                        help="SWA epochs (at least 2: one iterate per epoch, SWAG's moments need two)")
    args = parser.parse_args()
    devices = [str(_peers.check_device("devices", dev, parser.error)) for dev in args.devices]  # before loading data
    split = uci_split("boston", 0, test_fraction=0.1)
    print("| device | epochs (SGD + SWA) | steps | wall s | ms/step | torch threads |")
    print("|---|---|---|---|---|---|")
    for dev in devices:
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
