"""Packing vs aspect-ratio buckets on the same mixed-aspect shards: real (non-padding) image tokens per second and the
padding fraction, tiny recipe model on CPU (one process).

    python bench/bench_packing.py                 # 30 timed steps each, after 3 warm-up steps
    python bench/bench_packing.py --steps 10 --images 256
"""
import argparse, io, json, statistics, tempfile, time
from pathlib import Path


def make_shards(d: Path, n: int) -> str:
    "n OpenMoji scenes at aspect ratios 1:1 to 1:3 (both orientations) around 64 px, in shards of 64, with their sizes."
    import webdataset as wds
    from flite_nb.data import OpenMojiScenes, render_scene
    src = OpenMojiScenes(length=n, size=(64, 64))
    hw = [(64, 64), (64, 96), (96, 64), (48, 128), (128, 48), (40, 120), (56, 80)]
    with wds.ShardWriter(str(d / '%06d.tar'), maxcount=64, verbose=0) as w:
        for i in range(n):
            (h, wd), b = hw[i % len(hw)], io.BytesIO()
            render_scene(src.scene(i)[0], h, wd).save(b, 'PNG')
            w.write({'__key__': f'{i:06d}', 'png': b.getvalue(), 'txt': src[i]['caption'].encode(),
                     'json': json.dumps(dict(width=wd, height=h)).encode()})
    return str(d / '*.tar')


def run(spec: str, how: str, steps: int, warmup: int) -> dict:
    from flite_nb.train import build_config
    from flite_nb.training import Trainer
    over = ['val.every=0', 'val.sample_every=0', 'checkpoint.every=0', f'data.path={spec}', f'stages.0.steps={steps + warmup}',
            'stages.0.resolution=[32,32]', 'stages.0.batch_size=32', 'val.n_samples=8', f'stages.0.{how}=true']
    cfg = build_config('tiny', overrides=over)
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, d, install_signals=False, quiet=True)
        t.enter_stage(0)
        times, pads, real = [], [], []
        for s in range(steps + warmup):
            t0 = time.perf_counter(); m = t.train_step(0, s); dt = time.perf_counter() - t0
            idx = t.order.batch(s)
            tok = sum((h // cfg.unit) * (w // cfg.unit) for h, w in (t.ds.target_size(j) for j in idx))
            if s >= warmup: times.append(dt); pads.append(float(m.get('pad_frac', 0.0))); real.append(tok)
    budget = (32 // cfg.unit) ** 2
    return dict(how=how, step_s=statistics.median(times), real_tokens_per_s=sum(real) / sum(times), pad_frac=statistics.mean(pads),
                fill=statistics.mean(real) / (32 * budget), per_epoch=t.order.per_epoch, usable=len(t.ds))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=30); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--images', type=int, default=700)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        spec = make_shards(Path(d), a.images)
        rows = [run(spec, how, a.steps, a.warmup) for how in ('buckets', 'packing')]
    print(f"tiny model, 32 px budget (64 tokens), global batch 32, {a.images} images at 7 aspect ratios, {a.steps} steps")
    print(f"{'':>8} {'step s':>7} {'real tok/s':>11} {'padding':>8} {'budget used':>12} {'batches/epoch':>14}")
    for r in rows:
        print(f"{r['how']:>8} {r['step_s']:>7.3f} {r['real_tokens_per_s']:>11.0f} {r['pad_frac']:>8.1%} {r['fill']:>12.1%} {r['per_epoch']:>14}")
