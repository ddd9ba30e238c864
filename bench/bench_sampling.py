"""Sampling throughput: images/s for N-step classifier-free-guided Euler sampling.

    python bench/bench_sampling.py                          # the issue's two shapes: tiny at 32 px, base at 256 px, 28 steps, CFG
    python bench/bench_sampling.py --shapes tiny:32 --n 16 --precision bf16 --compile
    python bench/bench_sampling.py --pipeline runs/tiny/pipeline --sizes 32 64    # a saved pipeline, end to end

Shape mode (`--shapes preset:pixels`) times the denoising loop alone: a randomly initialised model of the preset
(non-zero gates, so the work is real), a random text context of `--text-len` tokens at the preset's text width, the
conditional and unconditional rows in one batched forward per step (`flite_nb.flow.guided_pass`, as the pipeline
does), no text encoder and no VAE decode (latent-space presets sample at 1/8 of the pixels, as with the Flux VAE).
It prints images/s, the model GFLOP/s (chapter 23's forward count x 2 rows x steps) and that as a fraction of the
matmul of the same precision measured in this process (bench/peak.py). Pipeline mode times `FlitePipeline.__call__`
end to end (text encoding, sampling, decode) for guided and unguided sampling.

Measured on an idle 2-core CPU (2026-12-02, 2 threads, bf16, 28 steps, CFG): tiny preset at 32 px (256 tokens)
1.36 img/s = 22% of the bf16 matmul; base preset at 256 px 0.13 img/s = 39%; the tiny recipe's own pipeline
(runs/tiny/pipeline, 32 px) 9.2 img/s guided, 17.6 unguided, end to end.
"""
from __future__ import annotations
import argparse, tempfile, time

import torch

from flite_nb.core import autocast_dtype
from flite_nb.flow import guided_pass, cfg_combine, sample_euler
from flite_nb.model import FLiteDiT, model_flops, perturb_zero_init, preset
from flite_nb.sampling import FlitePipeline, tiny_pipeline
from peak import matmul_flops, model_side, sync


def bench_shape(name: str, px: int, n: int, steps: int, cfg_scale: float, precision: str, text_len: int,
                compile_: bool, device: str, repeats: int) -> dict:
    "Best images/s of `steps`-step guided Euler sampling with preset `name` at `px` pixels."
    cfg = preset(name)
    side = model_side(cfg, px)
    model = perturb_zero_init(FLiteDiT(cfg)).to(device).eval()
    amp = autocast_dtype(device, precision)
    fwd = torch.compile(model) if compile_ else model
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(2 * n, text_len, cfg.text_dim, generator=g).to(device)
    mask = torch.ones(2 * n, text_len, dtype=torch.bool, device=device)
    mask[n:, 1:] = False                                       # the unconditional rows: one (null) token
    x1 = torch.randn(n, cfg.in_channels, side, side, generator=g).to(device)
    ts = torch.linspace(1, 0, steps + 1).tolist()

    def v_fn(x, t):
        vc, vu = guided_pass(fwd, x, t, ctx, mask, amp)
        return cfg_combine(vu, vc, cfg_scale)

    t0 = time.perf_counter()
    with torch.no_grad(): sample_euler(v_fn, x1, ts[:3] if not compile_ else ts); sync(device)
    first = time.perf_counter() - t0                           # with --compile: compilation + one full run
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad(): sample_euler(v_fn, x1, ts)
        sync(device); rates.append(n / (time.perf_counter() - t0))
    fl = 2 * steps * model_flops(cfg, side, side, text_len)['forward']
    best = max(rates)
    return dict(best=best, worst=min(rates), gflops=best * fl / 1e9, first_s=first, side=side)


def bench_pipeline(folder, sizes, n, steps, precisions):
    print(f"{'precision':>9} {'size':>7} {'guided':>6} {'s/batch':>8} {'img/s':>7}")
    for prec in precisions:
        pipe = FlitePipeline.from_folder(folder, precision=prec)
        for s in sizes:
            for cfg in (1.0, 3.0):
                pipe('warm-up', height=s, width=s, steps=1, cfg_scale=cfg, progress=False)
                t = time.perf_counter()
                pipe(['a red apple'] * n, height=s, width=s, steps=steps, cfg_scale=cfg, progress=False, output='pt')
                dt = time.perf_counter() - t
                print(f"{prec:>9} {f'{s}x{s}':>7} {str(cfg != 1.0):>6} {dt:8.2f} {n / dt:7.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--shapes', nargs='+', default=['tiny:32', 'base:256'], help='preset:pixels pairs (shape mode)')
    ap.add_argument('--pipeline', default=None, help="a pipeline folder (pipeline mode); 'random' for a random tiny one")
    ap.add_argument('--sizes', type=int, nargs='+', default=[32, 64], help='pipeline mode: image sizes')
    ap.add_argument('--n', type=int, default=None, help='images per batch (default: 16 for tiny, 2 for larger presets)')
    ap.add_argument('--steps', type=int, default=28)
    ap.add_argument('--cfg', type=float, default=4.0)
    ap.add_argument('--text-len', type=int, default=77)
    ap.add_argument('--precision', default='bf16', choices=['fp32', 'bf16'])
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], help='pipeline mode')
    ap.add_argument('--compile', action='store_true', help='torch.compile the model (the first run includes compilation)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.pipeline:
        folder = a.pipeline
        if folder == 'random': folder = tempfile.mkdtemp() + '/pipeline'; tiny_pipeline(folder, size=32)
        return bench_pipeline(folder, a.sizes, a.n or 8, a.steps, a.precisions)
    peak = matmul_flops(autocast_dtype(a.device, a.precision) or torch.float32, a.device) / 1e9
    print(f"torch {torch.__version__} on {a.device}, {torch.get_num_threads()} threads; {a.steps} Euler steps, CFG {a.cfg} "
          f"(2 rows per image per step), {a.text_len} text tokens, {a.precision}; {a.precision} matmul {peak:.0f} GFLOP/s")
    for spec in a.shapes:
        name, px = spec.split(':'); px = int(px)
        n = a.n or (16 if name == 'tiny' else 2)
        r = bench_shape(name, px, n, a.steps, a.cfg, a.precision, a.text_len, a.compile, a.device, a.repeats)
        print(f"  {name:>9s} {px}x{px} px ({r['side']}x{r['side']} latent), batch {n}: {r['best']:8.2f} img/s best "
              f"(worst {r['worst']:.2f}), {r['gflops']:6.0f} GFLOP/s = {100 * r['gflops'] / peak:.0f}% of the matmul"
              + (f"; first run incl. compile {r['first_s']:.0f} s" if a.compile else ''))


if __name__ == '__main__':
    main()
