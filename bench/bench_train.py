"""Training throughput per recipe: images/s and step time on CPU; on a GPU also tokens/s and MFU (bf16 peak),
with and without torch.compile and sequence dropout.

    python bench/bench_train.py                       # CPU: micro and tiny recipes
    python bench/bench_train.py --recipes tiny --steps 20 --variants base,seqdrop,compile
"""
import argparse, statistics, tempfile, time
import torch
from flite_nb.train import build_config
from flite_nb.training import Trainer
from flite_nb.model import model_flops

PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}   # dense bf16 FLOP/s (SXM)
VARIANTS = {'base': [], 'seqdrop': ['stages.0.seq_drop=0.5'], 'compile': ['dist.compile=true'],
            'compile+seqdrop': ['dist.compile=true', 'stages.0.seq_drop=0.5']}


def peak_flops():
    if not torch.cuda.is_available(): return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def bench(recipe, variant, steps, warmup, extra):
    over = ['val.every=0', 'val.sample_every=0', 'checkpoint.every=0', f'stages.0.steps={steps + warmup}', *VARIANTS[variant], *extra]
    cfg = build_config(recipe, overrides=over)
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, d, install_signals=False, quiet=True)
        t.enter_stage(0)
        times = []
        for s in range(steps + warmup):
            if t.device.type == 'cuda': torch.cuda.synchronize()
            t0 = time.perf_counter()
            t.train_step(0, s)
            if t.device.type == 'cuda': torch.cuda.synchronize()
            if s >= warmup: times.append(time.perf_counter() - t0)
    st, mc = cfg.stages[0], t.cfg.model
    h, w = st.resolution[0] // t.space.downsample, st.resolution[1] // t.space.downsample
    n_tok = (h // mc.patch) * (w // mc.patch)
    kept = max(1, int(n_tok * (1 - st.seq_drop)))
    med = statistics.median(times)
    row = dict(recipe=recipe, variant=variant, device=str(t.device), batch=st.batch_size, step_s=med, best_s=min(times),
               images_per_s=st.batch_size / med, tokens_per_s=st.batch_size * kept / med)
    peak = peak_flops()
    if peak:
        f = model_flops(mc, h, w, text_len=cfg.text.max_length, n_tokens=kept)['train']
        row['mfu'] = f * row['images_per_s'] / peak
    return row


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--recipes', default='micro,tiny')
    p.add_argument('--variants', default=None, help='comma list of ' + ','.join(VARIANTS) + ' (default: base,seqdrop on CPU; all on GPU)')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('overrides', nargs='*')
    a = p.parse_args()
    variants = a.variants.split(',') if a.variants else (list(VARIANTS) if torch.cuda.is_available() else ['base', 'seqdrop'])
    print(f"{'recipe':8} {'variant':16} {'device':7} {'batch':>5} {'step s':>8} {'img/s':>8} {'tok/s':>9} {'MFU':>6}")
    for r in a.recipes.split(','):
        for v in variants:
            x = bench(r, v, a.steps, a.warmup, a.overrides)
            mfu = f"{x['mfu']:.1%}" if 'mfu' in x else '-'
            print(f"{x['recipe']:8} {x['variant']:16} {x['device']:7} {x['batch']:>5} {x['step_s']:>8.3f} {x['images_per_s']:>8.1f} {x['tokens_per_s']:>9.0f} {mfu:>6}", flush=True)
