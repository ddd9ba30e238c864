"""The machine's practical matmul throughput, measured in the calling process (for "fraction of peak" figures), and a preset's input side.

    python bench/peak.py            # bf16 and fp32 on CPU (and CUDA when present)
"""
from __future__ import annotations
import time

import torch


def sync(device: str | torch.device):
    "Wait for `device`'s queued work (a no-op on CPU)."
    device = torch.device(device)
    if device.type == 'cuda': torch.cuda.synchronize(device)


def model_side(cfg, px: int) -> int:
    "The model's input side for an image of `px` pixels: pixel-space presets take it as is, latent ones at 1/8 (Flux VAE)."
    return px if cfg.in_channels == 3 else px // 8


def matmul_flops(dtype: torch.dtype = torch.bfloat16, device: str | torch.device = 'cpu', n: int | None = None,
                 seconds: float = 0.5) -> float:
    "Best FLOP/s of an n x n @ n x n matmul in `dtype` over `seconds` of repeats (n: 1024 on CPU, 8192 on CUDA)."
    device = torch.device(device)
    n = n or (8192 if device.type == 'cuda' else 1024)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    for _ in range(2): a @ b                  # warm-up: allocation, kernel choice
    sync(device)
    best, end, k = 0.0, time.perf_counter() + seconds, 4 if device.type == 'cuda' else 1
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(k): a @ b
        sync(device)
        best = max(best, k * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def peaks(device: str | torch.device = 'cpu') -> dict[str, float]:
    "{'bf16': FLOP/s, 'fp32': FLOP/s} measured now on `device`."
    return {'bf16': matmul_flops(torch.bfloat16, device), 'fp32': matmul_flops(torch.float32, device)}


if __name__ == '__main__':
    devs = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for d in devs:
        p = peaks(d)
        print(f"{d}: {torch.get_num_threads()} threads; " + ', '.join(f"{k} matmul {v / 1e9:.0f} GFLOP/s" for k, v in p.items()))
