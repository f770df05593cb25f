# %% [markdown]
# # Evaluating explanations with the metrics
#
# How good is an explanation? `rdex.metrics` scores any method, RDE masks and pixel
# attributions alike: faithfulness curves (rate-distortion, deletion, insertion), sparsity and
# smoothness, conciseness-preciseness and hallucination. This tutorial compares CartoonX, Pixel
# RDE and Integrated Gradients (IG) on one image. It is small (128x128, the `preview` schedule, few
# curve points) so that it runs in about a minute on a CPU; the numbers are for illustration,
# not a benchmark.

# %%
import matplotlib.pyplot as plt

import rdex
from rdex import metrics as M
from rdex.baselines import integrated_gradients

model = rdex.load_classifier()
x = rdex.sample_image("chelsea", size=128).unsqueeze(0)

# %% [markdown]
# ## Three explanations
#
# RDE results become an `Explanation` with `Explanation.from_rde` (the metrics then use the
# method's own representation and obfuscation); a pixel attribution `(B, 1, H, W)` with
# `Explanation.from_attribution`.

# %%
explanations = {}
for name, cls in [("cartoonx", rdex.CartoonX), ("pixel-rde", rdex.PixelRDE)]:
    explainer = cls(model, preset="preview")
    result = explainer.explain(x)
    explanations[name] = M.Explanation.from_rde(explainer, x, result)
target = result.target
ig = integrated_gradients(model, x, target=target, n_steps=32)
ig = ig.sum(1, keepdim=True)  # (1, 1, H, W): the channel sum
explanations["IG"] = M.Explanation.from_attribution(
    "ig", x, ig, target=target
)

# %% [markdown]
# ## All metrics at once
#
# `evaluate` computes every metric of the module for one method. The curve points are few here
# (`fractions`, `steps`, `samples`) to keep the page fast.

# %%
fractions = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
evaluations = {
    name: M.evaluate(model, x, ex, fractions=fractions, samples=4, steps=8)
    for name, ex in explanations.items()
}
keys = ["rd_auc", "deletion_auc", "insertion_auc", "tv", "wavelet_gini",
        "cp_pixel_l1", "hallucination"]
print(f"{'metric':>14s} {'better':>7s}" + "".join(f"{n:>11s}" for n in evaluations))
for k in keys:
    better = "higher" if M.METRIC_DIRECTIONS[k] > 0 else "lower"
    values = "".join(f"{float(ev.scores[k][0]):11.3f}" for ev in evaluations.values())
    print(f"{k:>14s} {better:>7s}" + values)

# %% [markdown]
# ## The curves

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, curve in zip(axes, ["rate-distortion", "deletion", "insertion"], strict=True):
    for name, ev in evaluations.items():
        c = ev.curves[curve]
        ax.plot(c.fractions, c.values[0], "-o", ms=3, label=name)
    ax.set_title(curve)
    ax.set_xlabel("fraction of ranked entries")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("expected distortion")
axes[1].set_ylabel("target probability")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading them: the **rate-distortion** curve keeps the top fraction of each method's own
# entries (wavelet coefficients for CartoonX, pixels for the others) and replaces the rest with
# noise; lower means the kept entries carry the decision. **Deletion** removes the most relevant
# pixels first (lower is better), **insertion** adds them to a blurred copy (higher is better).
#
# ## What the retained images look like
#
# CP scores and the hallucination score are computed on the retained image (the mask applied to
# the input). Hallucination counts edges of the retained image that the input does not have.

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, (name, ex) in zip(axes, explanations.items(), strict=True):
    ax.imshow(ex.retained[0].permute(1, 2, 0).clamp(0, 1))
    h = float(evaluations[name].scores["hallucination"][0])
    ax.set_title(f"{name}\nhallucination {h:.3f}", fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# From the command line, `rdex evaluate` does the same for a folder written by `rdex explain` or
# for images (see [Measure explanations](../how-to/measure.md)).
