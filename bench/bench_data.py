"""The data path's figures: decoded + resized images/s in one process (= per DataLoader worker) for a folder, a manifest
and tar shards at 256 and 512 px; stage start-up from a 100k-entry index; and the tiny recipe with 0 vs 2 workers
(steps/s and the share of step time spent waiting for data).

    python bench/bench_data.py                      # all three parts
    python bench/bench_data.py --parts decode,startup --images 200
"""
import argparse, io, json, os, tempfile, time
from pathlib import Path
from PIL import Image


def make_images(d: Path, n: int, hw=(768, 1024)):
    "n JPEG scenes of about 1 MP (what a photo dataset holds) as a folder, a manifest and 4 shards."
    import webdataset as wds
    from flite_nb.data import OpenMojiScenes, render_scene
    src = OpenMojiScenes(length=n, size=(64, 64))
    (d / 'folder').mkdir(); (d / 'shards').mkdir()
    rows = []
    with wds.ShardWriter(str(d / 'shards' / '%06d.tar'), maxcount=max(n // 4, 1), verbose=0) as w:
        for i in range(n):
            h, wd = hw if i % 2 else hw[::-1]
            b = io.BytesIO(); render_scene(src.scene(i)[0], h, wd).save(b, 'JPEG', quality=90)
            cap = src[i]['caption']
            (d / 'folder' / f'{i:06d}.jpg').write_bytes(b.getvalue()); (d / 'folder' / f'{i:06d}.txt').write_text(cap)
            rows.append(dict(image=f'folder/{i:06d}.jpg', caption=cap))
            w.write({'__key__': f'{i:06d}', 'jpg': b.getvalue(), 'txt': cap.encode(), 'json': json.dumps(dict(width=wd, height=h)).encode()})
    (d / 'train.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return {'folder': str(d / 'folder'), 'manifest': str(d / 'train.jsonl'), 'shards': str(d / 'shards' / '*.tar')}


def decode_rate(path: str, size: int, n: int) -> float:
    from flite_nb.data import ImageDataConfig
    from flite_nb.sources import open_images
    ds = open_images(ImageDataConfig(path=path, size=(size, size)), say=lambda *a: None)
    ds[0]
    t0 = time.perf_counter()
    for i in range(min(n, len(ds))): ds[i]
    return min(n, len(ds)) / (time.perf_counter() - t0)


def startup(n: int = 100_000) -> dict:
    "Seconds to open a dataset from an n-entry index and draw the bucketed global order of its first step."
    from flite_nb.data import ImageDataConfig, make_buckets
    from flite_nb.sources import open_images, write_index, _target
    from flite_nb.order import GlobalOrder
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / 'big'; root.mkdir()
        write_index(_target(ImageDataConfig(path=str(root))), dict(kind='folder', caption_ext='.txt', caption_key='', stamp=None, n=n),
                    [[f'{i:08d}.jpg', f'a caption {i}', '', 768 + 32 * (i % 9), 1024] for i in range(n)])
        t0 = time.perf_counter()
        ds = open_images(ImageDataConfig(path=str(root), buckets=make_buckets(256, 16)), say=lambda *a: None)
        t1 = time.perf_counter()
        GlobalOrder([ds.target_size(i) for i in range(len(ds))], 256, 0, 0).batch(0)
        t2 = time.perf_counter()
    return dict(entries=n, open_s=t1 - t0, order_s=t2 - t1, total_s=t2 - t0)


def train_wait(workers: int, steps: int) -> dict:
    "The tiny recipe for `steps` steps: steps/s after the first 5, and the mean share of step time spent waiting for data."
    from flite_nb.train import build_config
    from flite_nb.training import Trainer
    cfg = build_config('tiny', overrides=['val.every=0', 'val.sample_every=0', 'checkpoint.every=0', f'max_steps={steps}', 'log_every=1',
                                          f'data.num_workers={workers}'])
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, d, install_signals=False, quiet=True)
        t.fit()
        recs = [json.loads(l) for l in (Path(d) / 'metrics.jsonl').read_text().splitlines()]
    recs = [r for r in recs if 'train/data_wait_frac' in r][5:]
    el = recs[-1]['time'] - recs[0]['time']
    return dict(workers=workers, steps_per_s=(len(recs) - 1) / el, data_wait=sum(r['train/data_wait_frac'] for r in recs) / len(recs))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--parts', default='decode,startup,train'); ap.add_argument('--images', type=int, default=120)
    ap.add_argument('--steps', type=int, default=60)
    a = ap.parse_args()
    parts = a.parts.split(',')
    print(f"cpu cores {os.cpu_count()}")
    if 'decode' in parts:
        with tempfile.TemporaryDirectory() as d:
            srcs = make_images(Path(d), a.images)
            print(f"\ndecode + resize + centre crop, one process, {a.images} JPEGs of 768x1024 / 1024x768")
            print(f"{'source':>9} {'px':>5} {'img/s':>8}")
            for name, path in srcs.items():
                for size in (256, 512): print(f"{name:>9} {size:>5} {decode_rate(path, size, a.images):>8.1f}")
    if 'startup' in parts:
        s = startup()
        print(f"\nstage start-up from a {s['entries']:,}-entry index: open {s['open_s']:.2f} s + bucketed order {s['order_s']:.2f} s = {s['total_s']:.2f} s")
    if 'train' in parts:
        print(f"\ntiny recipe, {a.steps} steps (the first 5 not counted)")
        print(f"{'workers':>8} {'steps/s':>8} {'data wait':>10}")
        for w in (0, 2):
            r = train_wait(w, a.steps); print(f"{w:>8} {r['steps_per_s']:>8.2f} {r['data_wait']:>10.1%}")
