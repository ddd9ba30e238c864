"""The GPU checks in one command (issue 20): one table of what works on this GPU and how fast.

    bash bench/gpu_check.sh                  # one CUDA GPU, about 5-8 minutes; prints the table, writes gpu_check.md
    python bench/gpu_check.py --smoke        # the same plumbing on a CPU at toy sizes (2-4 minutes): no figure means anything

Checks, each isolated (a failure is a FAIL row with its one-line error, and the next check runs):
1. `cuda cells`: `nbdev_test --flags cuda` on every notebook with a `#| cuda` cell (their CPU cells run too).
2. `fsdp2 bf16`: one process under torchrun, the model sharded by the library's `parallelize(..., 'fsdp')` with
   FSDP2's `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`; 5 AdamW steps; the first loss against the
   unsharded model under bf16 autocast (relative difference), every loss finite.
3. `compile`: the training step of `base` at 256 px, eager vs `torch.compile`: first-step (compilation) time and
   the speed-up.
4. `attention`: forward + backward of SDPA in bf16 under each kernel (flash, memory-efficient, cuDNN, math) at the
   token counts of 512 and 1024 px with the `base` preset, and the library's `attention` (which picks SDPA on a GPU).
5. `train step`: `base` at 256 and 512 px, bf16 autocast, fused AdamW: images/s, MFU against the device's bf16
   peak (flite_nb.plan.PEAK_FLOPS by device name) and against the matmul measured in this process, peak memory.
6. `sampling`: `base` at 1024 x 1024 (128 x 128 latents), 28 steps, CFG in one batched forward: images/s.
"""
from __future__ import annotations
import argparse, contextlib, json, subprocess, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))
from peak import matmul_flops, model_side, sync                     # noqa: E402
from flite_nb.model import FLiteDiT, preset, perturb_zero_init, model_flops   # noqa: E402
from flite_nb.plan import PEAK_FLOPS                    # noqa: E402


def device_peak(dev: torch.device) -> tuple[str, float | None]:
    "(name, dense bf16 peak FLOP/s or None) of `dev`: H100/H200/A100 by name."
    if dev.type != 'cuda': return 'cpu', None
    name = torch.cuda.get_device_name(dev)
    key = next((k for k in PEAK_FLOPS if k in name.lower().replace(' ', '')), None)
    return name, PEAK_FLOPS[key] if key else None


def check_cuda_cells(a) -> str:
    has = lambda p: any(c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| cuda') for c in json.loads(p.read_text())['cells'])
    nbs = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if has(p))
    if not nbs: raise RuntimeError('no notebook has a #| cuda cell')
    flags = [] if a.smoke else ['--flags', 'cuda']
    for p in nbs:
        r = subprocess.run(['nbdev_test', '--path', str(p), *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
        if r.returncode: raise RuntimeError(f"{p.name}: " + (r.stderr.strip().splitlines() or ['failed'])[-1])
    return f"{len(nbs)} notebooks pass ({', '.join(p.stem for p in nbs)})"


def fsdp_worker(a) -> None:
    "Run under torchrun (one process): FSDP2 with bf16 MixedPrecisionPolicy vs the unsharded model."
    import torch.distributed as dist
    from flite_nb.distributed import parallelize
    from bench_model import make_batch
    dev = torch.device('cuda', 0) if torch.cuda.is_available() else torch.device('cpu')
    dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo', device_id=dev if dev.type == 'cuda' else None)
    cfg = preset(a.preset_small)
    torch.manual_seed(0); ref = perturb_zero_init(FLiteDiT(cfg)).to(dev)
    model = perturb_zero_init(FLiteDiT(cfg)).to(dev); model.load_state_dict(ref.state_dict())
    x, t, ctx, mask, target = make_batch(cfg, 8, a.side_small, 32, device=dev)
    ac = torch.autocast(dev.type, dtype=torch.bfloat16)
    with ac, torch.no_grad(): l_ref = float((ref(x, t, ctx, mask).float() - target).pow(2).mean())
    wrapped = parallelize(model, 'fsdp', dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses, t0 = [], time.perf_counter()
    for _ in range(5):
        with contextlib.nullcontext() if dev.type == 'cuda' else ac:   # on a GPU the policy casts; on a CPU autocast does
            loss = (wrapped(x, t, ctx, mask).float() - target).pow(2).mean()
        loss.backward(); opt.step(); opt.zero_grad(); losses.append(float(loss))
    sync(dev)
    ms = (time.perf_counter() - t0) / 5 * 1e3
    ok = all(map(lambda v: v == v and abs(v) != float('inf'), losses)) and abs(losses[0] - l_ref) / l_ref < 0.03
    mem = f", peak {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if dev.type == 'cuda' else ''
    print(f"RESULT {'ok' if ok else 'FAIL'} first loss {losses[0]:.4f} vs unsharded {l_ref:.4f} "
          f"({abs(losses[0] - l_ref) / l_ref:.2%}), last {losses[-1]:.4f}, {ms:.0f} ms/step{mem}")
    dist.destroy_process_group()


def check_fsdp(a) -> str:
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '1', '--master_port', '29533', __file__,
           '--fsdp-worker'] + (['--smoke'] if a.smoke else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    line = next((l for l in r.stdout.splitlines() if l.startswith('RESULT')), None)
    if r.returncode or line is None: raise RuntimeError((r.stderr.strip().splitlines() or ['no output'])[-1])
    if not line.startswith('RESULT ok'): raise RuntimeError(line[7:])
    return line[10:]


def check_compile(a, dev) -> str:
    from bench_model import bench
    px = a.px_compile
    side = model_side(preset(a.preset), px)
    t0 = time.perf_counter()
    c = bench(a.preset, 'bf16', a.batch, side, 77, a.steps, 1, 1, compile_=True, device=dev)
    first = time.perf_counter() - t0 - a.steps * a.batch / c['best']
    e = bench(a.preset, 'bf16', a.batch, side, 77, a.steps, 1, 2, device=dev)
    return f"{a.preset} {px} px: eager {e['best']:.1f}, compiled {c['best']:.1f} img/s ({c['best'] / e['best']:.2f}x); compilation ~{first:.0f} s"


def check_attention(a, dev) -> str:
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from flite_nb.attention import attention
    cfg, out = preset(a.preset), []
    for px in a.px_attention:
        L = (model_side(cfg, px) // cfg.patch) ** 2 + cfg.n_registers
        q, k, v = (torch.randn(a.batch_attention, cfg.heads, L, cfg.head_dim, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        kinds = {'library': lambda: attention(q, k, v)}
        for nm, be in (('flash', 'FLASH_ATTENTION'), ('efficient', 'EFFICIENT_ATTENTION'), ('cudnn', 'CUDNN_ATTENTION'), ('math', 'MATH')):
            if hasattr(SDPBackend, be):
                kinds[nm] = (lambda be=be: _with(sdpa_kernel(getattr(SDPBackend, be)), lambda: F.scaled_dot_product_attention(q, k, v)))
        res = []
        for nm, fn in kinds.items():
            try:
                fn().float().sum().backward(); sync(dev); t0 = time.perf_counter()
                for _ in range(3): fn().float().sum().backward()
                sync(dev); res.append(f"{nm} {(time.perf_counter() - t0) / 3 * 1e3:.1f}")
            except RuntimeError: res.append(f"{nm} n/a")
        out.append(f"L={L}: " + ', '.join(res) + ' ms')
    return '; '.join(out)


def _with(ctx, fn):
    with ctx: return fn()


def check_train(a, dev) -> str:
    from bench_model import bench
    name, peak = device_peak(dev)
    mm = matmul_flops(torch.bfloat16, dev)
    out = []
    for px, b in zip(a.px_train, a.batch_train):
        side = model_side(preset(a.preset), px)
        r = bench(a.preset, 'bf16', b, side, 77, a.steps, 2, 2, device=dev)
        mfu = f"MFU {100 * r['gflops'] * 1e9 / peak:.1f}% of {name}'s {peak / 1e12:.0f} TFLOP/s, " if peak else ''
        mem = f", {r['gpu_peak_gb']:.1f} GiB" if r['gpu_peak_gb'] is not None else ''
        out.append(f"{px} px x{b}: {r['best']:.1f} img/s, {r['gflops'] / 1e3:.1f} TFLOP/s = {mfu}{100 * r['gflops'] * 1e9 / mm:.0f}% of the measured matmul{mem}")
    return '; '.join(out)


def check_sampling(a, dev) -> str:
    from bench_sampling import bench_shape
    r = bench_shape(a.preset, a.px_sample, a.n_sample, 28, 3.0, 'bf16', 77, False, str(dev), 2)
    return f"{a.preset} {a.px_sample}x{a.px_sample}, 28 steps, CFG, batch {a.n_sample}: {r['best']:.2f} img/s ({r['gflops'] / 1e3:.1f} TFLOP/s)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--smoke', action='store_true', help='CPU, toy sizes: checks the plumbing, not the GPU')
    ap.add_argument('--fsdp-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--only', nargs='+', default=None, help='run only these checks (names as in the table)')
    ap.add_argument('--out', default='gpu_check.md', help='also write the table here')
    a = ap.parse_args(argv)
    big = dict(preset='base', preset_small='small', side_small=32, batch=32, steps=3, px_compile=256, px_attention=[512, 1024],
               batch_attention=8, px_train=[256, 512], batch_train=[32, 16], px_sample=1024, n_sample=4)
    toy = dict(preset='tiny', preset_small='tiny', side_small=16, batch=4, steps=1, px_compile=16, px_attention=[16],
               batch_attention=2, px_train=[16], batch_train=[4], px_sample=16, n_sample=1)
    for k, v in (toy if a.smoke else big).items(): setattr(a, k, v)
    if a.fsdp_worker: return fsdp_worker(a)
    dev = torch.device('cpu' if a.smoke else 'cuda')
    if dev.type == 'cuda' and not torch.cuda.is_available(): sys.exit('gpu_check: no CUDA device here (use --smoke for a CPU run of the plumbing)')
    if a.smoke: torch.set_num_threads(1)
    checks = {'cuda cells': lambda: check_cuda_cells(a), 'fsdp2 bf16': lambda: check_fsdp(a), 'compile': lambda: check_compile(a, dev),
              'attention': lambda: check_attention(a, dev), 'train step': lambda: check_train(a, dev), 'sampling': lambda: check_sampling(a, dev)}
    name = device_peak(dev)[0]
    rows = [f"GPU check on {name}, torch {torch.__version__}{', SMOKE (CPU, toy sizes)' if a.smoke else ''}, {time.strftime('%Y-%m-%d %H:%M')}", '',
            '| check | status | result | s |', '|---|---|---|---|']
    for k, fn in checks.items():
        if a.only and k not in a.only: continue
        t0 = time.perf_counter()
        try: st, res = 'ok', fn()
        except Exception as e: st, res = 'FAIL', f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
        rows.append(f"| {k} | {st} | {res} | {time.perf_counter() - t0:.0f} |")
        print(rows[-1], flush=True)
        if dev.type == 'cuda': torch.cuda.empty_cache()
    Path(a.out).write_text('\n'.join(rows) + '\n')
    print('\n'.join(rows))
    return 1 if any('| FAIL |' in r for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
