"""CPU time of the model's forward+backward (gradient to the input) per memory format and chunk.

One thread, process CPU time (robust to other processes on a shared machine), EfficientNet-Lite0
architecture with random weights, interleaved rounds. Usage:

    python benchmarks/studies/model_chunks.py --size 256 --samples 16 --chunks 16,8,4 --nchw 16
    python benchmarks/studies/model_chunks.py --size 128 --samples 64 --chunks 64,16,8 --nchw 64 --bf16 16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import timm
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--chunks", default="16,8,4")
    p.add_argument("--nchw", type=int, default=None, help="also NCHW with this chunk")
    p.add_argument("--bf16", type=int, default=None, help="also bf16 autocast with this chunk")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(a.samples, 3, a.size, a.size)

    def case(net: torch.nn.Module, chunk: int, cl: bool, bf16: bool = False):
        def run() -> None:
            for lo in range(0, a.samples, chunk):
                y = x[lo : lo + chunk].clone().requires_grad_(True)
                inp = y.contiguous(memory_format=torch.channels_last) if cl else y
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = net(inp)
                torch.autograd.grad(torch.softmax(out.float(), 1)[:, 1].sum(), y)

        return run

    cases = {
        f"channels_last chunk {c}": case(model_cl, c, True) for c in map(int, a.chunks.split(","))
    }
    if a.nchw:
        cases[f"NCHW chunk {a.nchw}"] = case(model, a.nchw, False)
    if a.bf16:
        cases[f"channels_last bf16 chunk {a.bf16}"] = case(model_cl, a.bf16, True, True)
    for f in cases.values():
        f()
    res: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.repeats):
        for k, f in cases.items():
            t = time.process_time()
            f()
            res[k].append(time.process_time() - t)
    report = {
        "size": a.size,
        "samples": a.samples,
        "threads": 1,
        "loadavg": os.getloadavg(),
        "cpu_s": res,
        "cpu_s_min": {k: min(v) for k, v in res.items()},
        "cpu_s_median": {k: statistics.median(v) for k, v in res.items()},
    }
    for k, v in res.items():
        print(f"{k:34s} CPU s min {min(v):6.2f} median {statistics.median(v):6.2f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
