"""Sampling throughput of a pipeline folder (or a random tiny one): images/s per size, precision and guidance.

    python bench/bench_sampling.py [--pipeline runs/tiny/pipeline] [--sizes 32 64] [--n 8] [--steps 20] [--threads 1]
"""
import argparse, tempfile, time
import torch
from flite_nb.sampling import FlitePipeline, tiny_pipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pipeline', default=None, help='pipeline folder; default: a random tiny pipeline')
    ap.add_argument('--sizes', type=int, nargs='+', default=[32, 64])
    ap.add_argument('--n', type=int, default=8)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'])
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    folder = a.pipeline
    if folder is None:
        folder = tempfile.mkdtemp() + '/pipeline'; tiny_pipeline(folder, size=32)
    print(f"{'precision':>9} {'size':>7} {'guided':>6} {'s/batch':>8} {'img/s':>7}")
    for prec in a.precisions:
        pipe = FlitePipeline.from_folder(folder, precision=prec)
        for s in a.sizes:
            for cfg in (1.0, 3.0):
                pipe('warm-up', height=s, width=s, steps=1, cfg_scale=cfg, progress=False)
                t = time.perf_counter()
                pipe(['a red apple'] * a.n, height=s, width=s, steps=a.steps, cfg_scale=cfg, progress=False, output='pt')
                dt = time.perf_counter() - t
                print(f"{prec:>9} {f'{s}x{s}':>7} {str(cfg != 1.0):>6} {dt:8.2f} {a.n / dt:7.1f}")


if __name__ == '__main__': main()
