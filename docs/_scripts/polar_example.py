"""The paper's Figure 2: RDE in polar coordinates keeps the angle of a point, drops its length."""

import math

import torch
from torch import nn

from rdex import RDE, RDEConfig, Representation
from rdex.obfuscations import Obfuscation, ObfuscationState


class Polar(Representation):
    """x = f(h) with h = (angle, radius): a non-linear representation of points in the plane."""

    name = "polar"
    shared_dims = ()  # one mask entry per coefficient

    def encode(self, x):
        angle = torch.atan2(x[:, 1], x[:, 0])
        radius = torch.linalg.vector_norm(x, dim=1)
        return [torch.stack([angle, radius], dim=1)]

    def decode(self, bands, *, shape):
        (h,) = bands
        return torch.stack([h[:, 1] * torch.cos(h[:, 0]), h[:, 1] * torch.sin(h[:, 0])], dim=1)

    def band_names(self, bands):
        return ["angle, radius"]


class PolarUniform(Obfuscation):
    """Deleted coefficients are replaced by uniform noise on [-pi, pi] x [0, 1] (Figure 2)."""

    def prepare(self, x, bands, representation):
        return ObfuscationState(shapes=[b.shape for b in bands], params=[])

    def sample(self, state, num_samples, generators):
        draws = []
        for g in generators:
            u = torch.rand(num_samples, 2, generator=g)
            draws.append(torch.stack([(2 * u[:, 0] - 1) * math.pi, u[:, 1]], dim=1))
        return [torch.stack(draws)]  # (B, L, 2)


class AngleClassifier(nn.Module):
    """Class 0 inside a cone around the angle pi/4, whatever the point's distance to 0."""

    def forward(self, x):
        angle = torch.atan2(x[:, 1], x[:, 0])
        score = 20.0 * (0.3 - (angle - math.pi / 4).abs())
        return torch.stack([score, -score], dim=1)


def explain_point(x: torch.Tensor):
    config = RDEConfig(lambda_k=0.2, steps=300, samples=64, lr=0.05, clip=None, channels_last=False)
    return RDE(AngleClassifier(), Polar(), PolarUniform(), config=config).explain(x)


if __name__ == "__main__":
    result = explain_point(torch.tensor([[0.5, 0.5]]))
    angle, radius = result.mask[0][0].tolist()
    print(f"mask on the angle {angle:.2f}, on the radius {radius:.2f}")
