"""Sequence-dropout speed: training-step time (forward, backward, AdamW) against the drop rate r.

Usage: python bench/bench_seqdrop.py [--preset tiny] [--size 32] [--batch 8] [--repeats 3] [--rounds 3] [--threads N]
Prints best / median / max step time, images/s and the speed-up over r = 0 (best steps), plus the FLOPs-ideal speed-up.
The rates are interleaved over rounds so that load from other processes falls on all of them; report best and spread.
"""
import argparse, torch
from flite_nb.model import preset, model_flops
from flite_nb.seqdrop import bench_seqdrop, format_bench, keep_count

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='tiny'); ap.add_argument('--size', type=int, default=32)
    ap.add_argument('--batch', type=int, default=8); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--rounds', type=int, default=3); ap.add_argument('--text-len', type=int, default=32)
    ap.add_argument('--rates', type=float, nargs='+', default=[0., .25, .5, .75])
    ap.add_argument('--threads', type=int, default=None, help='torch threads (1 is steadier on a shared machine)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    cfg = preset(a.preset); L = (a.size // cfg.patch) ** 2
    print(f"preset {a.preset}: d={cfg.dim} depth={cfg.depth} registers={cfg.n_registers}; {a.size}x{a.size} px = {L} image tokens; "
          f"batch {a.batch}, text {a.text_len} tokens; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = bench_seqdrop(a.preset, a.size, a.batch, tuple(a.rates), a.repeats, a.rounds, a.text_len)  # threads set above
    print(format_bench(rows))
    f0 = model_flops(cfg, a.size, a.size, a.text_len)['train']
    print('FLOPs-ideal speed-up: ' + ', '.join(f"r={r:g}: {f0 / model_flops(cfg, a.size, a.size, a.text_len, n_tokens=keep_count(L, r))['train']:.2f}x" for r in a.rates))

if __name__ == '__main__': main()
