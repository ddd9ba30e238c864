"""CPU threads on an idle and on a busy machine: the default model's bf16 training step (img/s) with N threads, 1 thread,
OMP_WAIT_POLICY=PASSIVE, and `threads=0` (the start-up probe of `flite_nb.core.pick_threads`).
A 'busy' machine runs one pure-Python busy loop on the side (one core taken by another job).

    python bench/bench_threads.py            # prints one table
"""
import os, subprocess, sys, time

STEP = r'''
import sys, time, os, torch
from flite_nb.core import pick_threads
from flite_nb.model import FLiteDiT, preset
mode = sys.argv[1]; n = os.cpu_count() or 1
if mode == 'probe': n = pick_threads(n)[0]
else: torch.set_num_threads(int(mode))
m = FLiteDiT(preset('tiny', dim=192, depth=4, heads=3, patch=4, n_registers=4, text_dim=384))
opt = torch.optim.AdamW(m.parameters(), 1e-3)
x, ctx, msk = torch.randn(32, 3, 32, 32), torch.randn(32, 16, 384), torch.ones(32, 16, dtype=torch.bool)
def step():
    with torch.autocast('cpu', dtype=torch.bfloat16):
        l = (m(x, torch.rand(32), ctx, msk).float() - x).pow(2).mean()
    l.backward(); opt.step(); opt.zero_grad()
for _ in range(3): step()
t = time.perf_counter()
for _ in range(20): step()
print(f"{20 * 32 / (time.perf_counter() - t):.1f} {torch.get_num_threads()}")
'''


def run(mode, env=None):
    r = subprocess.run([sys.executable, '-c', STEP, mode], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode: raise SystemExit(r.stderr[-2000:])
    img_s, n = r.stdout.split()
    return float(img_s), int(n)


def main():
    cores = os.cpu_count() or 1
    variants = [(f'{cores} threads', str(cores), None), ('1 thread', '1', None),
                (f'{cores} threads, OMP_WAIT_POLICY=PASSIVE', str(cores), {'OMP_WAIT_POLICY': 'PASSIVE'}),
                ('threads=0 (probe)', 'probe', None)]
    rows = []
    for load in ('idle', 'busy'):
        hog = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if load == 'busy' else None
        try:
            time.sleep(0.5)
            for name, mode, env in variants:
                img_s, n = run(mode, env)
                rows.append((load, name, img_s, n))
        finally:
            if hog: hog.kill()
    print(f"{'machine':8s} {'setting':38s} {'img/s':>7s} {'threads used':>12s}")
    for load, name, img_s, n in rows: print(f"{load:8s} {name:38s} {img_s:7.1f} {n:12d}")


if __name__ == '__main__': main()
