"""The project's own small networks, used by the bundled sample (28x28-ish digit images).

Each class takes ``num_classes`` and ``in_channels`` so the architecture registry can rebuild
it from a state_dict alone (both are read from weight shapes).
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small two-block CNN: good accuracy on the digits sample at 32x32."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            # Global pooling keeps the head independent of the input size.
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Sine(nn.Module):
    """sin(x): with large first-layer weights it makes high-frequency features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


class DigitsWideMLP(nn.Module):
    """A wide one-hidden-layer net on raw pixels with sine features.

    With large first-layer weights it memorises its training images (a kernel with a tiny
    bandwidth): the bundled *overfit* example. ``input_size`` is the side of the square
    input it was trained on, read back from the first layer's width.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32, width: int = 2048
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * input_size * input_size, width), Sine()
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
