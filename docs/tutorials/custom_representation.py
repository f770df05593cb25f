# %% [markdown]
# # A custom representation
#
# RDE explains a decision in whatever representation `x = f(h)` you choose: the mask is
# optimised over the coefficients `h`. CartoonX uses wavelets and Pixel RDE the pixels; this
# tutorial writes a new one. It asks a question the built-in representations cannot:
# **does the classifier need the colours of the image, or its brightness?**
#
# The representation splits an image into a luminance band (one channel) and two colour
# (chroma) bands, the YCbCr transform of JPEG. A mask entry per pixel and band then says whether
# the model needs that pixel's brightness, its colour, or neither.

# %%
import matplotlib.pyplot as plt
import torch

import rdex
from rdex import RDE, Representation, preset

# %% [markdown]
# ## The representation
#
# A representation implements `encode(x) -> list of bands` and `decode(bands, shape=...)`,
# which must be differentiable. `shared_dims` lists the dimensions along which one mask entry
# is shared (here none: the luminance band has one channel, the chroma band two, and each
# gets its own mask), and `groups` says which bands share the statistics of the adaptive noise.

# %%
RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


class YCbCr(Representation):
    """Luminance (1 channel) and chroma (2 channels) of an RGB image."""

    name = "ycbcr"
    shared_dims = ()

    def encode(self, x):
        ycc = torch.einsum("ij,bjhw->bihw", RGB_TO_YCBCR.to(x), x)
        return [ycc[:, :1], ycc[:, 1:]]

    def decode(self, bands, *, shape):
        ycc = torch.cat(list(bands), dim=1)
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YCBCR).to(ycc), ycc)

    def band_names(self, bands):
        return ["luminance", "chroma"]


rep = YCbCr()
x = rdex.sample_image("chelsea", size=112).unsqueeze(0)
print("round trip error:", float((rep.decode(rep.encode(x), shape=x.shape[1:]) - x).abs().max()))

# %% [markdown]
# ## Explaining with it
#
# `RDE(model, representation, obfuscation, config=...)` runs Algorithm 1 of the paper with any
# representation. Adaptive Gaussian noise replaces what the mask deletes with noise of the same
# mean and standard deviation as each band.

# %%
model = rdex.load_classifier()
config = preset("preview", lambda_k=10, seed=0)
result = RDE(model, rep, "gaussian", config=config).explain(x)
print("explained label:", model.labels[int(result.target[0])])
luma, chroma = result.mask
print(f"mean mask: luminance {float(luma.mean()):.2f}, chroma {float(chroma.mean()):.2f}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
axes[0].imshow(x[0].permute(1, 2, 0))
axes[0].set_title("input")
axes[1].imshow(luma[0, 0], cmap="viridis", vmin=0, vmax=1)
axes[1].set_title("mask on luminance")
axes[2].imshow(chroma[0].mean(0), cmap="viridis", vmin=0, vmax=1)
axes[2].set_title("mask on chroma (mean of Cb, Cr)")
axes[3].imshow(result.explanation[0, 0], cmap="gray", vmin=0, vmax=1)
axes[3].set_title("retained image (grey)")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# The mask keeps far more of the luminance than of the colour: for this classifier, the
# brightness structure of the cat carries the decision.
#
# ## A non-linear representation: the paper's Figure 2
#
# `f` need not be linear. The paper's Figure 2 explains a classifier of points in the plane that
# decides by the angle of a point only. In polar coordinates RDE keeps the angle and deletes the
# radius; the [how-to guide](../how-to/own-representation.md) draws it and shows the code.
#
# ## Your own obfuscation and distortion
#
# The two other parts of RDE are exchangeable too. A distortion is any function
# `(reference (B, m), outputs (B, L, m), target (B,)) -> (B, L)`; here, the squared change of the
# label's *logit* instead of its probability:

# %%
def logit_change(reference, outputs, target):
    index = target.view(-1, 1, 1).expand(-1, outputs.shape[1], 1)
    return (reference.gather(1, target.view(-1, 1)) - outputs.gather(2, index).squeeze(2)) ** 2


logit = RDE(
    model,
    rep,
    rdex.Constant(0.0),
    config=preset("preview", lambda_k=10, steps=40, seed=0, model_output="identity"),
    distortion=logit_change,
).explain(x)
print("final distortion (logit units squared):", float(logit.final_distortion[0]))
print("mean mask:", [round(float(m.mean()), 2) for m in logit.mask])
