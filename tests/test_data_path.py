"""The data path a user with their own files takes: shards with several aspect ratios, an index, worker processes, a held-out
validation split, a three-stage run on two ranks stopped at the stage boundary and resumed exactly, and one-line errors."""
import io, json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
STAGES = {'stages': [
    {'name': 'crop', 'steps': 3, 'resolution': [16, 16], 'batch_size': 8, 'lr': 1e-3, 'warmup': 1},
    {'name': 'buckets', 'steps': 3, 'resolution': [16, 16], 'buckets': True, 'seq_drop': 0.5, 'batch_size': 8, 'lr': 1e-3, 'warmup': 1},
    {'name': 'unmasked', 'steps': 2, 'resolution': [16, 16], 'buckets': True, 'batch_size': 8, 'lr': 5e-4, 'warmup': 1}]}
BASE = ['--preset', 'micro', 'device=cpu', 'val.every=3', 'val.sample_every=0', 'val.n_samples=8', 'checkpoint.every=1']
CORRUPT = (1, 2, 3)   # truncated PNGs: their headers (json sizes) look fine; decoding fails while training


def make_shards(d: Path, n: int = 48, per: int = 8) -> str:
    "n OpenMoji scenes at 4 aspect ratios in tar shards of `per`, with a json member holding each size."
    import webdataset as wds
    from flite_nb.data import OpenMojiScenes, render_scene
    src, hw = OpenMojiScenes(length=n, size=(16, 16)), [(16, 16), (16, 24), (24, 16), (16, 32)]
    d.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(d / 'train-%06d.tar'), maxcount=per, verbose=0) as w:
        for i in range(n):
            (h, wd), b = hw[i % 4], io.BytesIO()
            render_scene(src.scene(i)[0], h, wd).save(b, 'PNG')
            w.write({'__key__': f'{i:06d}', 'png': b.getvalue()[:60] if i in CORRUPT else b.getvalue(),
                     'txt': src[i]['caption'].encode(), 'json': json.dumps(dict(width=wd, height=h)).encode()})
    return str(d / ('train-{000000..%06d}.tar' % (n // per - 1)))


def train(args, out, nproc=0, timeout=300):
    pre = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc else [sys.executable]
    return subprocess.run(pre + ['-m', 'flite_nb.train', '--out', str(out), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def metrics(out):
    return [json.loads(l) for l in Path(out, 'metrics.jsonl').read_text().splitlines()]


def losses(out): return [r['train/loss'] for r in metrics(out) if 'train/loss' in r]


def weights(out, step): return load_file(str(Path(out) / 'checkpoints' / f'step_{step:06d}' / 'model.safetensors'))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    spec = make_shards(d / 'shards')
    (d / 'stages.json').write_text(json.dumps(STAGES))
    return d, spec


@pytest.fixture(scope='module')
def reference(data, tmp_path_factory):
    "The three-stage run on one process with two loader workers, uninterrupted."
    d, spec = data
    out = tmp_path_factory.mktemp('ref')
    r = train(BASE + ['--config', str(d / 'stages.json'), f'data.path={spec}', 'data.num_workers=2'], out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out, r


def test_index_buckets_holdout_and_bad_samples(reference):
    out, r = reference
    assert 'indexed 6 shard(s)' in r.stdout or 'data ' in r.stdout
    assert 'validation: 4 images held out' in r.stdout                      # 10% of 48, by hash: never trained on
    assert "stage 1 'buckets'" in r.stdout and "stage 2 'unmasked'" in r.stdout
    m = metrics(out)
    assert {k for rec in m for k in rec if k.startswith('val/') and k.endswith('/loss')} >= {'val/crop/loss', 'val/buckets/loss', 'val/unmasked/loss'}
    assert all(0 <= rec['train/data_wait_frac'] <= 1 for rec in m if 'train/data_wait_frac' in rec)
    bad = [json.loads(l) for l in (out / 'bad_samples.jsonl').read_text().splitlines()]   # found by the workers, reported here
    assert bad and all(b['reason'] == 'undecodable' and b['path'].split('::')[1] in {str(i) for i in CORRUPT} for b in bad), bad
    n_train = max(rec.get('train/data/bad_files', 0) for rec in m)   # the training data's; the list also names held-out ones
    assert 1 <= n_train <= len({b['path'] for b in bad}) == len(bad)


def test_workers_do_not_change_the_run(data, reference, tmp_path):
    "Zero workers or two: the same samples in the same order, so the same losses bit for bit."
    d, spec = data
    r = train(BASE + ['--config', str(d / 'stages.json'), f'data.path={spec}', 'data.num_workers=0'], tmp_path / 'w0')
    assert r.returncode == 0, r.stderr[-3000:]
    assert losses(tmp_path / 'w0') == losses(reference[0])


def test_two_ranks_stop_at_stage_boundary_resume_exact(data, reference, tmp_path):
    "Two gloo ranks (one worker each) stop after stage 0, resume into the bucketed stage and end where one process did."
    d, spec = data
    args = BASE + ['--config', str(d / 'stages.json'), f'data.path={spec}', 'data.num_workers=1']
    out = tmp_path / 'two'
    r = train(args + ['max_steps=3'], out, nproc=2)
    assert r.returncode == 0 and 'max_steps: saving a checkpoint at step 3' in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    r = train(args + ['--resume'], out, nproc=2)
    assert r.returncode == 0 and 'resumed from' in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    a, b = losses(reference[0]), losses(out)
    assert len(a) == len(b) == 8 and max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)   # all-reduce order: float noise only
    w1, w2 = weights(reference[0], 8), weights(out, 8)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    r = train(args + ['max_steps=3'], tmp_path / 'again', nproc=2); assert r.returncode == 0
    r = train(args + ['--resume'], tmp_path / 'again', nproc=2); assert r.returncode == 0
    assert losses(tmp_path / 'again') == b                                   # the same world size: bit-exact


def test_a_folder_path_alone_trains_on_the_folder(tmp_path):
    "data.path without data.source: the folder's images, not OpenMoji; a wrong path or a contradiction is one line, exit 2."
    from flite_nb.data import OpenMojiScenes, render_scene
    src, d = OpenMojiScenes(length=24, size=(16, 16)), tmp_path / 'imgs'
    d.mkdir()
    for i in range(24): render_scene(src.scene(i)[0], 20, 20).save(d / f'{i}.png'); (d / f'{i}.txt').write_text(src[i]['caption'])
    base = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0', 'val.n_samples=4']
    r = train(base + [f'data.path={d}'], tmp_path / 'run')
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'data {d}: 24 files, 24 usable' in r.stdout and 'validation: 2 images held out' in r.stdout, r.stdout
    assert (d / '.flite_index.jsonl').exists()
    for bad, msg in [(f'data.path={tmp_path}/my_images', 'does not exist'),
                     (f'data.source=openmoji data.path={d}', "data.source='openmoji' would ignore it"),
                     (f'data.source=shards data.path={d}', 'is folder data')]:
        r = train(base + bad.split(), tmp_path / 'bad')
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, (bad, r.stderr[-1500:])


def test_index_command(data, tmp_path):
    d, spec = data
    r = subprocess.run([sys.executable, '-m', 'flite_nb.data', 'index', spec], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0 and '48 files, 48 usable' in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, '-m', 'flite_nb.data', 'index', str(tmp_path / 'none')], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'does not exist' in r.stderr


def test_bitfit_stage_trains_only_its_set(tmp_path):
    """FiTv2's post-training as a stage: after a full stage, a 'bitfit' stage changes biases, norms, modulation, patch embedder
    and final layer only."""
    from flite_nb.optim import trainable_names
    from flite_nb.training import build_model
    from flite_nb.recipes import recipe
    cfg = {'stages': [{'name': 'full', 'steps': 2, 'resolution': [16, 16], 'batch_size': 8, 'warmup': 1},
                      {'name': 'post', 'steps': 2, 'resolution': [16, 16], 'batch_size': 8, 'warmup': 1, 'trainable': 'bitfit'}]}
    (tmp_path / 'c.json').write_text(json.dumps(cfg))
    out = tmp_path / 'run'
    r = train(['--preset', 'micro', '--config', str(tmp_path / 'c.json'), 'device=cpu', 'val.every=0', 'val.sample_every=0',
               'checkpoint.every=1', 'checkpoint.keep=4'], out)
    assert r.returncode == 0 and 'stage 1 trains bitfit' in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    a, b = weights(out, 2), weights(out, 4)
    keep = trainable_names(build_model(recipe('micro')), 'bitfit')
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and changed <= keep, sorted(changed - keep)
    assert {'final_proj.weight', 'patch_embed.patch_proj.weight'} <= changed


def test_precompute_on_two_ranks_resumes_and_trains(data, tmp_path):
    "Latents of the bucketed stage, written by two torchrun ranks; a lost shard is redone alone; a run trains from them."
    d, spec = data
    lat = tmp_path / 'lat'
    pre = ['-m', 'flite_nb.precompute', '--preset', 'micro', '--config', str(d / 'stages.json'), '--stage', '1', '--out', str(lat),
           '--per-shard', '16', 'device=cpu', f'data.path={spec}']
    tr = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    r = subprocess.run(tr + pre, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    meta = json.loads((lat / 'latents_meta.json').read_text())
    assert (meta['samples'], meta['shards'], meta['buckets']) == (48, 3, True)
    n = sum(1 for f in lat.glob('latents-*.tar') for _ in __import__('tarfile').open(f).getmembers()) // 3
    assert n == 48 - len(CORRUPT), n                                   # undecodable images are left out
    (lat / 'latents-000001.tar').unlink(); (lat / 'latents_meta.json').unlink()
    r = subprocess.run([sys.executable, '-m', 'flite_nb.train', '--preset', 'micro', '--out', str(tmp_path / 'early'), 'device=cpu',
                        f'data.path={lat}'], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and 'precompute did not finish' in r.stderr, r.stderr[-2000:]
    r = subprocess.run([sys.executable] + pre, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and '2 shards reused' in r.stdout, r.stdout + r.stderr[-2000:]
    one = {'stages': [dict(STAGES['stages'][1], steps=3)]}
    (tmp_path / 'one.json').write_text(json.dumps(one))
    base = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0', 'val.n_samples=8', f'data.path={lat}']
    r = train(base + ['--config', str(d / 'stages.json')], tmp_path / 'wrong')
    assert r.returncode == 2 and 'precompute them for this stage' in r.stderr, r.stderr[-2000:]
    r = train(base + ['--config', str(tmp_path / 'one.json'), 'data.num_workers=1'], tmp_path / 'run')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert len(losses(tmp_path / 'run')) == 3 and 'validation: 4 images held out' in r.stdout


def test_packing_stage_on_one_and_two_ranks(data, tmp_path):
    "stage.packing: native aspect ratios under the token budget, padded and masked; the same losses on 1 and 2 ranks."
    d, spec = data
    (tmp_path / 'p.json').write_text(json.dumps({'stages': [dict(name='packed', steps=3, resolution=[16, 16], packing=True,
                                                                 seq_drop=0.5, batch_size=8, lr=1e-3, warmup=1)]}))
    args = ['--preset', 'micro', '--config', str(tmp_path / 'p.json'), 'device=cpu', 'val.every=0', 'val.sample_every=0',
            'checkpoint.every=0', 'val.n_samples=8', f'data.path={spec}']
    r1 = train(args, tmp_path / 'one')
    r2 = train(args + ['data.num_workers=1'], tmp_path / 'two', nproc=2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr[-2000:] + r2.stderr[-3000:]
    assert "(packed)" in r1.stdout
    a, b = losses(tmp_path / 'one'), losses(tmp_path / 'two')
    assert len(a) == 3 and max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    pads = [r['train/pad_frac'] for r in metrics(tmp_path / 'one') if 'train/pad_frac' in r]
    assert len(pads) == 3 and all(0 < p < 0.5 for p in pads), pads   # 16x24 and 16x32 images fill less than the 64-token budget
    bad = train(args + ['stages.0.buckets=true'], tmp_path / 'bad')
    assert bad.returncode == 2 and 'packing and buckets' in bad.stderr


def test_weighted_mix_of_two_shard_sources(data, tmp_path):
    "data.path='a,b' with data.mix: each epoch draws the weighted share of each source; wrong weights are one-line errors."
    d, spec = data
    small = make_shards(tmp_path / 'small', n=16)
    base = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0', 'val.n_samples=8',
            f'data.path={spec},{small}']
    r = train(base + ['data.mix=[1,1]'], tmp_path / 'run')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    import re
    got = re.search(r'data mix: source 0: (\d+) samples, weight 1 = 50% .*source 1: (\d+) samples, weight 1 = 50%', r.stdout)
    assert got and int(got[1]) + int(got[2]) == 64 - 6 and int(got[2]) <= 16, r.stdout[-2000:]   # 6 held out for validation
    for bad, msg in [('data.mix=[1]', '1 weights but data.path has 2'), ('data.mix=[1,-1]', 'finite and > 0')]:
        r = train(base + [bad], tmp_path / 'bad')
        assert r.returncode == 2 and msg in r.stderr, r.stderr[-1000:]
