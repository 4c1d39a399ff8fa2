"""A small network that really classifies: a CIFAR-style ResNet trained for a few seconds on the
bundled digits at 8x8, saved with the metadata `resnets train` writes. Shared by the predict
tests; trained once per test session (cached in the process), never stored between sessions."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from resnets import create_model
from resnets.data.digits import load_digits_data
from resnets.data.transforms import normalize
from resnets.weights import WeightsMeta, save_weights

SIZE = 8


@functools.cache
def trained_digits_model():
    """(model in eval mode, WeightsMeta, the digits ImageData at 8x8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small trains fastest on one thread
    try:
        return _train()
    finally:
        torch.set_num_threads(threads)


def _train():
    data = load_digits_data(input_size=SIZE)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:8-16-32", num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x_all = normalize(data.train.images, data.mean, data.std)
    y_all = data.train.labels
    epochs, batch = 3, 64
    steps = epochs * ((len(y_all) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    meta = WeightsMeta(
        model="basic:1-1-1:8-16-32",
        spec=model.spec.to_dict(),
        classes=data.classes,
        mean=list(data.mean),
        std=list(data.std),
        input_size=SIZE,
        resize_size=None,
        extra={"color": "L", "data": "digits"},
    )
    return model, meta, data


def save_digits_weights(folder) -> object:
    """The shared digits network written as our .safetensors (weights + metadata) in `folder`."""
    model, meta, _ = trained_digits_model()
    path = folder / "digits.safetensors"
    save_weights(model, path, meta)
    return path
