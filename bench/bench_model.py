"""Training-step throughput of the F Lite DiT on this machine (forward + backward + AdamW).

    python bench/bench_model.py                       # tiny and small, fp32 and bf16 autocast, batch 32, 32x32 px
    python bench/bench_model.py --presets tiny --precisions bf16 --repeats 3 --profile

    python bench/bench_model.py --presets tiny --precisions bf16 --compile    # torch.compile (inductor)
    python bench/bench_model.py --attention                                   # SDPA vs explicit softmax, CPU

--compile compiles each block, as the Trainer does (`dist.compile`); divide by the same run without --compile for the
speed-up. --device cuda --peak h100 runs on a GPU and adds MFU against the named device's bf16 peak.

Measured on an idle 2-core CPU (2026-12-02, 2 threads, tiny, batch 32, best of 3): bf16 eager 28.7-28.8 img/s = 20% of
the bf16 matmul (~1600 GFLOP/s), fp32 16.3-17.4 img/s = 44-47% of the fp32 matmul (~420 GFLOP/s), bf16 compiled per
block 45.6 img/s = 32% (1.6x). The eager step is bound by element-wise work on (B, L, d) tensors (norms, modulation,
QK-norm and RoPE, casts), which is memory traffic rather than arithmetic and what compiling fuses. Writing the norms as
two autograd Functions (chapters 21 and 23, eager only) left the bf16 eager speed where it was (29.0/28.3 img/s before,
28.8/28.0 after), raised fp32 eager from 15.9/15.8 to 16.3/17.4, and cut peak memory from 2.33 to 1.88 GiB (bf16); the
compiled step keeps the composite ops (with the Functions it had measured 43.0 img/s and 1.77 GiB, against 44.5 and
1.69 without). The default recipe's smaller shape gains 1-6% a step from them (two A/B pairs) and 7% end to end (train
chapter).

Prints images/s, achieved GFLOP/s (model_flops, 3 x forward), that figure as a fraction of the matmul throughput of
the same precision measured in the same process just before (bench/peak.py: the best n=1024 matmul, the practical
peak of this machine for this process; fp32 runs use the fp32 figure) and peak memory (ru_maxrss of this process;
tracemalloc does not see torch's allocations). Timings on a shared CPU are noisy: use --repeats and read the best.
On a CPU shared with other jobs, --threads 1 avoids OpenMP spin-wait oversubscription (it was 4x faster than 2
threads at load average ~6 on 2 cores).
"""
from __future__ import annotations
import argparse, contextlib, resource, statistics, time

import torch

from flite_nb.core import autocast_dtype, human
from flite_nb.model import FLiteDiT, model_flops, perturb_zero_init, preset
from flite_nb.plan import peak_flops
from peak import matmul_flops, model_side, sync


def make_batch(cfg, batch, size, text_len, seed=0, device='cpu'):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, size, size, generator=g)
    ctx = torch.randn(batch, text_len, cfg.text_dim, generator=g)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    mask[:, text_len // 2:] = torch.rand(batch, text_len - text_len // 2, generator=g) < 0.3  # some padding
    mask = mask.cumprod(1).bool()
    return tuple(a.to(device) for a in (x, torch.rand(batch, generator=g), ctx, mask, torch.randn(x.shape, generator=g)))


def step_fn(model, opt, batch, dtype):
    x, t, ctx, mask, target = batch
    ac = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ac:
        out = model(x, t, ctx, mask)
    loss = (out.float() - target).pow(2).mean()
    loss.backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    return loss


def bench(name, precision, batch, size, text_len, steps, warmup, repeats, compile_=False, device='cpu'):
    cfg = preset(name)
    model = perturb_zero_init(FLiteDiT(cfg)).to(device)  # nonzero gates: the timed work is the real work
    if compile_:                                  # each block, as the Trainer does (flite_nb.distributed.parallelize)
        for blk in model.blocks: blk.compile()
    cuda = torch.device(device).type == 'cuda'
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda, foreach=None if cuda else True)
    dtype = {'fp32': None, 'bf16': torch.bfloat16}[precision]
    b = make_batch(cfg, batch, size, text_len, device=device)
    if torch.device(device).type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup): step_fn(model, opt, b, dtype)
    rates = []
    for _ in range(repeats):
        sync(device); t0 = time.perf_counter()
        for _ in range(steps): step_fn(model, opt, b, dtype)
        sync(device); rates.append(steps * batch / (time.perf_counter() - t0))
    fl = model_flops(cfg, size, size, text_len)['train']
    best = max(rates)
    return dict(preset=name, precision=precision, best=best, median=statistics.median(rates), worst=min(rates),
                gflops=best * fl / 1e9, maxrss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                gpu_peak_gb=torch.cuda.max_memory_allocated(device) / 2**30 if torch.device(device).type == 'cuda' else None)


def profile(name, precision, batch, size, text_len):
    cfg = preset(name)
    model = perturb_zero_init(FLiteDiT(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    dtype = {'fp32': None, 'bf16': torch.bfloat16}[precision]
    b = make_batch(cfg, batch, size, text_len)
    for _ in range(2): step_fn(model, opt, b, dtype)
    from torch.profiler import profile as prof, ProfilerActivity
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(3): step_fn(model, opt, b, dtype)
    print(p.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))


def bench_attention(B=32, heads=4, L=272, hd=64, n=3):
    "Forward + backward time of SDPA vs flite_nb.attention (explicit softmax for bf16 on CPU), self and cross shapes."
    import torch.nn.functional as F
    from flite_nb.attention import attention
    for dt in (torch.float32, torch.bfloat16):
        for S in (L, 77):
            res = {}
            for nm, fn in (('sdpa', lambda q, k, v: F.scaled_dot_product_attention(q, k, v)), ('flite_nb', attention)):
                q = torch.randn(B, heads, L, hd, dtype=dt, requires_grad=True)
                k, v = [torch.randn(B, heads, S, hd, dtype=dt, requires_grad=True) for _ in range(2)]
                fn(q, k, v).float().sum().backward()
                t0 = time.perf_counter()
                for _ in range(n): fn(q, k, v).float().sum().backward()
                res[nm] = (time.perf_counter() - t0) / n * 1e3
            print(f"  attention {str(dt)[6:]:8s} L_q={L} L_k={S}: " + ', '.join(f"{k} {v:.0f} ms" for k, v in res.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--presets', nargs='+', default=['tiny', 'small'])
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--size', type=int, default=32, help='image side in pixels (latent-space presets run at 1/8 of it, as with the Flux VAE)')
    ap.add_argument('--text-len', type=int, default=77)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    ap.add_argument('--peak', default=None, help="also report MFU against this bf16 peak: a device name of flite_nb.plan.PEAK_FLOPS (h100, h200, a100) or FLOP/s")
    ap.add_argument('--compile', action='store_true', help='torch.compile the model (inductor; slow first step)')
    ap.add_argument('--profile', action='store_true', help='print a torch.profiler table for each setting')
    ap.add_argument('--attention', action='store_true', help='only the attention micro-benchmark')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.attention: return bench_attention()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}, {a.size}x{a.size} px, "
          f"{a.text_len} text tokens; {a.repeats} repeats of {a.steps} steps")
    for name in a.presets:
        cfg = preset(name)
        side = model_side(cfg, a.size)
        print(f"{name}: {human(sum(p.numel() for p in FLiteDiT(cfg).parameters()))} params, {side}x{side} model input, "
              f"{model_flops(cfg, side, side, a.text_len)['train'] / 1e9:.2f} GFLOP per training image")
        for prec in a.precisions:
            peak = matmul_flops(autocast_dtype(torch.device(a.device).type, prec) or torch.float32, a.device) / 1e9
            r = bench(name, prec, a.batch, side, a.text_len, a.steps, a.warmup, a.repeats, a.compile, a.device)
            mfu = f"  MFU {100 * r['gflops'] * 1e9 / peak_flops(a.peak):.1f}% of {a.peak}" if a.peak else ''
            mem = f"GPU peak {r['gpu_peak_gb']:.2f} GiB" if r['gpu_peak_gb'] is not None else f"peak RSS {r['maxrss_gb']:.2f} GiB"
            print(f"  {prec:5s} {r['best']:7.1f} img/s best (median {r['median']:.1f}, worst {r['worst']:.1f})  "
                  f"{r['gflops']:6.0f} GFLOP/s = {100 * r['gflops'] / peak:.0f}% of the {prec} matmul ({peak:.0f} GFLOP/s){mfu}  {mem}")
            if a.profile: profile(name, prec, a.batch, a.size, a.text_len)


if __name__ == '__main__':
    main()
