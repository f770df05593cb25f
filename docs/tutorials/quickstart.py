# %% [markdown]
# # Quick start
#
# This tutorial explains one prediction of the bundled ImageNet classifier with CartoonX and
# Pixel RDE, reads the result, and draws the figures. It runs on a CPU in about a minute: the
# image is 128x128 and the schedule is `preview` (100 steps, 8 noise samples per step). For
# publication-quality explanations use the paper's size (256x256) and `preset="fast"` or
# `"paper"` (see [Lambda and presets](../concepts/lambda-and-presets.md)).
#
# Every figure on this page was drawn when the documentation was built.

# %%
import matplotlib.pyplot as plt
import torch

import rdex
from rdex.viz import explanation_figure

# %% [markdown]
# ## A model and an image
#
# `rdex.load_classifier()` returns the default classifier, EfficientNet-Lite0 with ImageNet
# weights that come with the package (nothing is downloaded). Every rdex classifier takes images
# with values in `[0, 1]` and normalises them itself.

# %%
model = rdex.load_classifier()
x = rdex.sample_image("chelsea", size=128).unsqueeze(0)  # (1, 3, 128, 128)
probs = torch.softmax(model(x), dim=1)
top = probs[0].topk(3)
for p, i in zip(top.values, top.indices, strict=True):
    print(f"{model.labels[int(i)]:>20s}  {float(p):.3f}")

# %% [markdown]
# ## CartoonX
#
# `CartoonX(model).explain(x)` optimises a mask over the image's wavelet coefficients. It
# explains the predicted label unless you pass `target=`.

# %%
cartoonx = rdex.CartoonX(model, preset="preview")
result = cartoonx.explain(x)
print("explained label:", model.labels[int(result.target[0])])
print("explanation:", tuple(result.explanation.shape))
print("mask bands:", len(result.mask))
kept = (result.mask_flat > 0.5).float().mean()
print(f"mask entries kept (> 0.5): {kept:.1%}")

# %% [markdown]
# The result holds the explanation picture (the mask applied to the greyscale image's wavelet
# coefficients, inverted and clipped to `[0, 1]`), the mask per wavelet band, and the history of
# the optimisation. `explanation_figure` draws all of it:

# %%
fig = explanation_figure(x, result, 0, labels=model.labels, title="CartoonX")
plt.show()

# %% [markdown]
# From left to right: the input with the predicted label, the CartoonX explanation (a
# piece-wise smooth picture of what the model needs to keep its decision), the mask applied to
# the colour image, and the curves per step: the loss and the mean mask value fall as the mask
# is sparsified, while the distortion of each step is noisy (every step draws new noise).

# %% [markdown]
# ## Pixel RDE on the same image
#
# Pixel RDE optimises a mask over the pixels themselves. It is sparse in pixels, so its
# explanations look jittery next to CartoonX's.

# %%
pixel = rdex.PixelRDE(model, preset="preview").explain(x)
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
axes[0].imshow(x[0].permute(1, 2, 0))
axes[0].set_title("input")
axes[1].imshow(result.explanation[0, 0], cmap="gray", vmin=0, vmax=1)
axes[1].set_title("CartoonX")
axes[2].imshow(pixel.explanation[0, 0], cmap="viridis", vmin=0, vmax=1)
axes[2].set_title("Pixel RDE")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Saving results
#
# `rdex.io.save_result` writes the mask (`.npz`) and a JSON record, as `rdex explain` does;
# the command line does all of the above in one line:
#
# ```bash
# rdex explain chelsea --method cartoonx,pixel-rde --preset preview --size 128
# ```
#
# Next: [build your own representation](custom_representation.py) or
# [measure the explanation](evaluation.py).
