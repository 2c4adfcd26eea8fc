"""The baseline side of bench/ddp_startup.py: the same tiny fit as raw DDP, for torchrun."""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 16, generator=g), torch.randn(64, generator=g))
    sampler = DistributedSampler(data, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=8, sampler=sampler)
    model = DistributedDataParallel(torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    first = True
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for x, y in loader:
            if first and dist.get_rank() == 0 and os.environ.get("BENCH_FIRST_STEP_FILE"):
                with open(os.environ["BENCH_FIRST_STEP_FILE"], "w") as f:
                    f.write(repr(time.time()))
            first = False
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    dist.destroy_process_group()
