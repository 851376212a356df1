"""Time one training step (augmentation + forward + backward + AdamW) of the compact CNN (castnet
small) on 2 CPU cores, in bf16 autocast and in fp32, at 128 and 160 px, batch 64.

    .venv/bin/python benchmarks/step_time.py
"""

import time

import torch
import torch.nn.functional as F

from castinspect.core.config import AugmentConfig
from castinspect.core.runtime import cpu_has_amx, tune_allocator
from castinspect.data.augment import augment_batch
from castinspect.models.registry import build_model, compact


def step_ms(size: int, bf16: bool, steps: int = 12, warmup: int = 2) -> tuple[float, float]:
    model = build_model(compact("small", input_size=size), 2).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.rand(64, 1, size, size), torch.randint(0, 2, (64,))
    g = torch.Generator().manual_seed(0)
    aug = net = 0.0
    for i in range(steps):
        t0 = time.perf_counter()
        xa = augment_batch(x.clone(), AugmentConfig(), g).contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(xa)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= warmup:
            aug, net = aug + t1 - t0, net + t2 - t1
    n = steps - warmup
    return 1e3 * aug / n, 1e3 * net / n


if __name__ == "__main__":
    print(f"allocator tuned: {tune_allocator()}, AMX: {cpu_has_amx()}, threads: {torch.get_num_threads()}")
    for size in (128, 160):
        times = {bf16: step_ms(size, bf16) for bf16 in (True, False)}
        print(f"{size} px: augmentation {times[True][0]:.0f} ms; model step bf16 {times[True][1]:.0f} ms, "
              f"fp32 {times[False][1]:.0f} ms ({times[False][1] / times[True][1]:.2f}x)")
