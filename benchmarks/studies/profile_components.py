"""Time the parts of one RDE step (model forward+backward, inverse DWT, noise) in one process.

Interleaved A/B repeats; prints medians and the load average. Usage:
    python benchmarks/studies/profile_components.py --size 256 --samples 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import ptwt
import timm
import torch


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    model_cl = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model_cl.load_state_dict(model.state_dict())
    for q in model_cl.parameters():
        q.requires_grad_(False)
    model_cl = model_cl.to(memory_format=torch.channels_last)
    n, s = a.samples, a.size
    x = torch.rand(n, 3, s, s)
    coeffs = ptwt.wavedec2(torch.rand(1, 3, s, s), "db3", level=5, mode="zero")

    def fb(m, cl):
        def run():
            y = x.clone().requires_grad_(True)
            inp = y.contiguous(memory_format=torch.channels_last) if cl else y
            out = torch.softmax(m(inp), 1)[:, 1].sum()
            torch.autograd.grad(out, y)

        return run

    def fwd(m, cl):
        def run():
            with torch.no_grad():
                inp = x.contiguous(memory_format=torch.channels_last) if cl else x
                m(inp)

        return run

    def idwt():
        cs = [coeffs[0].expand(n, -1, -1, -1).clone().requires_grad_(True)]
        for d in coeffs[1:]:
            cs.append(
                ptwt.WaveletDetailTuple2d(
                    *(t.expand(n, -1, -1, -1).clone().requires_grad_(True) for t in d)
                )
            )
        flat = [cs[0]] + [t for d in cs[1:] for t in d]
        y = ptwt.waverec2(tuple(cs), "db3")
        torch.autograd.grad(y.sum(), flat)

    total = sum(c.numel() for c in [coeffs[0]] + [t for d in coeffs[1:] for t in d])
    g = torch.Generator().manual_seed(0)

    def noise():
        torch.randn(n * total, generator=g)

    cases = {
        "fwd+bwd plain (NCHW model, NCHW input)": fb(model, False),
        "fwd+bwd channels_last input only": fb(model, True),
        "fwd+bwd channels_last input+weights": fb(model_cl, True),
        "fwd only plain": fwd(model, False),
        "fwd only channels_last both": fwd(model_cl, True),
        "ptwt waverec2 fwd+bwd": idwt,
        "noise draw (fused)": noise,
    }
    for f in cases.values():  # warm up
        f()
    res = {k: [] for k in cases}
    for _ in range(a.repeats):
        for k, f in cases.items():
            res[k] += timed(f, 1)
    report = {
        "size": s,
        "samples": n,
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "median_s": {k: statistics.median(v) for k, v in res.items()},
        "all_s": res,
    }
    for k, v in report["median_s"].items():
        print(f"{k:45s} {v:8.3f} s")
    print("loadavg", report["loadavg"])
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
