"""Training-step throughput of the PFPLD network (samples/s), CPU or GPU.

Each variant runs the trainer's step (uint8 batch -> float / 255, forward, masked wing + pose loss,
backward, Adam) on synthetic batches: warm-up steps first, then timed steps (with a device
synchronisation at both ends). The first variant is the baseline; every other one is printed with its
ratio to it.

    python benchmarks/bench_train.py                          # CPU, batch 64, fp32
    python benchmarks/bench_train.py --device cuda --batch-size 256   # fp32 vs AMP (bf16/fp16), channels-last

With ``--manifest M --cache DIR`` it also times end-to-end steps fed by the real data loader
(``--workers`` processes, crop cache, augmentation on), which shows whether the loader keeps up.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_batch(b: int, device: torch.device, seed: int = 0) -> dict:
    g = np.random.default_rng(seed)
    lm = g.uniform(0.1, 0.9, (b, 98, 2)).astype(np.float32)
    valid = g.random((b, 98)) > 0.1
    pose = g.uniform(-30, 30, (b, 3)).astype(np.float32)
    pose[: b // 2] = np.nan
    return {
        "image": torch.from_numpy(g.integers(0, 256, (b, 112, 112, 3), dtype=np.uint8)).to(device),
        "landmarks": torch.from_numpy(np.where(valid[..., None], lm, np.nan).astype(np.float32)).to(device),
        "valid": torch.from_numpy(valid).to(device),
        "pose": torch.from_numpy(pose).to(device),
        "weight": torch.ones(b, device=device),
    }


def step_fn(model, opt, scaler, amp_dtype, channels_last, cfg, pw):
    from pfpld_train.data.sampler import to_input
    from pfpld_train.train.loss import pfpld_loss

    def step(batch):
        x = to_input(batch["image"], batch["image"].device, channels_last)
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pose, lm = model(x)
        loss, _ = pfpld_loss(lm.float(), pose.float(), batch["landmarks"], batch["valid"], batch["pose"],
                             batch["weight"], cfg, pw)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_variant(device, batch_size, amp, channels_last, warmup, steps, batches=None) -> float:
    from pfpld_train.models.pfpld import PFPLD
    from pfpld_train.train.loss import LossConfig, point_weights

    torch.manual_seed(0)
    model = PFPLD().to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    cfg = LossConfig()
    step = step_fn(model, opt, scaler, amp_dtype, channels_last, cfg, point_weights(cfg, device))
    if batches is None:
        batch = make_batch(batch_size, device)
        for _ in range(warmup):
            step(batch)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(batch)
        sync(device)
        return steps * batch_size / (time.perf_counter() - t0)
    it = batches()
    n = 0
    for i, b in enumerate(it):
        b = {k: v.to(device, non_blocking=True) for k, v in b.items() if k != "row"}
        step(b)
        if i == warmup - 1:
            sync(device)
            t0 = time.perf_counter()
        elif i >= warmup:
            n += b["image"].shape[0]
        if i >= warmup + steps - 1:
            break
    sync(device)
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--steps", type=int, help="timed steps per variant (CPU 5, GPU 60)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (CPU 2, GPU 15)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads on CPU")
    ap.add_argument("--manifest", help="with --cache: also time steps fed by the real loader")
    ap.add_argument("--cache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    b = args.batch_size or (256 if gpu else 64)
    steps = args.steps or (60 if gpu else 5)
    warmup = args.warmup or (15 if gpu else 2)
    if gpu:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(0)
        variants = [("fp32", "off", False), ("amp bf16", "bf16", False), ("amp bf16 channels-last", "bf16", True),
                    ("amp fp16 + scaler", "fp16", False)]
    else:
        name = f"CPU, {torch.get_num_threads()} torch threads"
        variants = [("fp32", "off", False)]
    print(f"device: {name}; torch {torch.__version__}; batch {b}; {warmup} warm-up + {steps} timed steps")
    results = {"device": name, "torch": torch.__version__, "batch_size": b, "variants": {}}
    base = None
    for label, amp, cl in variants:
        sps = time_variant(device, b, amp, cl, warmup, steps)
        base = base or sps
        results["variants"][label] = sps
        print(f"  {label:<26} {sps:9.1f} samples/s  ({1000 * b / sps:7.1f} ms/step)  x{sps / base:.2f} vs fp32")
    if args.manifest and args.cache:
        from landmark_unify.manifest import read_manifest
        from pfpld_train.data.arrays import FaceArrays
        from pfpld_train.data.augmentation import AugmentConfig
        from pfpld_train.data.cache import CropCache
        from pfpld_train.data.dataset import FaceDataset
        from pfpld_train.data.sampler import EpochSampler, make_loader

        ds = FaceDataset(FaceArrays.from_manifest(read_manifest(args.manifest)), AugmentConfig(),
                         cache=CropCache(args.cache))
        sampler = EpochSampler(len(ds))
        loader = make_loader(ds, b, sampler, workers=args.workers, pin_memory=gpu, drop_last=True)

        def batches():
            epoch = 0
            while True:
                sampler.set_epoch(epoch)
                yield from loader
                epoch += 1

        amp, cl = ("bf16", False) if gpu else ("off", False)
        sps = time_variant(device, b, amp, cl, warmup, steps, batches=batches)
        results["end_to_end"] = {"workers": args.workers, "samples_per_s": sps, "amp": amp}
        print(f"  end to end, loader with {args.workers} workers + crop cache ({amp}): {sps:9.1f} samples/s  "
              f"x{sps / results['variants']['amp bf16' if gpu else 'fp32']:.2f} vs synthetic")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
