"""Wall, user and system time of 20 `fast` CartoonX steps at 256x256, with glibc's default
allocator thresholds or with freed memory kept in the heap (rdex.inference.keep_freed_memory).

    python benchmarks/studies/allocator.py default
    python benchmarks/studies/allocator.py kept

Run each in a fresh process (the thresholds are process-wide and cannot be reset).
"""

from __future__ import annotations

import resource
import sys
import time

from rdex.images import sample_image
from rdex.inference import keep_freed_memory
from rdex.methods import CartoonX
from rdex.models import load_classifier


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "kept"
    if mode not in ("default", "kept"):
        sys.exit(__doc__)
    if mode == "kept" and not keep_freed_memory():
        sys.exit("keep_freed_memory is a no-op here (not glibc, or RDEX_KEEP_FREED_MEMORY=0)")
    model = load_classifier()
    x = sample_image("chelsea", size=256).unsqueeze(0)
    CartoonX(model, preset="fast", steps=2).explain(x)  # warm-up
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    CartoonX(model, preset="fast", steps=20).explain(x)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{mode}: wall {time.perf_counter() - t0:.2f} s, user {r1.ru_utime - r0.ru_utime:.2f} s, "
        f"system {r1.ru_stime - r0.ru_stime:.2f} s, minor page faults {r1.ru_minflt - r0.ru_minflt}"
    )


if __name__ == "__main__":
    main()
