"Faults injected on purpose: kill -9 anywhere, damaged checkpoints, NaN, a crafted pickle, a full disk, bad configs."
import errno, json, os, pickle, random, signal, subprocess, sys, time, unittest.mock
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
MICRO = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0']


def train(args, out, timeout=240, env=ENV):
    return subprocess.run([sys.executable, '-m', 'flite_nb.train', '--out', str(out), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def final_weights(out, step):
    return load_file(str(Path(out) / 'checkpoints' / f'step_{step:06d}' / 'model.safetensors'))


def same(a, b): return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "An uninterrupted 8-step micro run with a checkpoint every step."
    out = tmp_path_factory.mktemp('ref')
    r = train(MICRO + ['stages.0.steps=8', 'checkpoint.every=1', 'checkpoint.keep=3'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    return final_weights(out, 8)


def test_kill9_anywhere_then_resume_is_exact(reference, tmp_path):
    "kill -9 at random moments (with a checkpoint every step most land inside a checkpoint or pipeline write), then --resume."
    out, rng, kills = tmp_path / 'run', random.Random(0), 0
    args = MICRO + ['stages.0.steps=8', 'checkpoint.every=1', 'checkpoint.keep=3']
    for attempt in range(3):
        resume = ['--resume'] if (out / 'checkpoints').exists() and any((out / 'checkpoints').glob('step_*[0-9]')) else []
        p = subprocess.Popen([sys.executable, '-m', 'flite_nb.train', '--out', str(out), *args, *resume],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        m, t0 = out / 'metrics.jsonl', time.time()
        while p.poll() is None and not (m.exists() and m.read_text().count('\n') >= 1 + attempt):
            assert time.time() - t0 < 120, 'the run did not start'; time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is not None: break
        p.send_signal(signal.SIGKILL); p.wait(); kills += 1
    assert kills >= 1
    r = train(args + ['--resume'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert same(final_weights(out, 8), reference)
    steps = [json.loads(l)['step'] for l in (out / 'metrics.jsonl').read_text().splitlines() if 'train/loss' in l]
    assert steps == sorted(set(steps)) == list(range(1, 9)), steps           # each step logged once
    assert not list(out.glob('checkpoints/*.tmp')) and not (out / 'pipeline.tmp').exists()


def _flip(f: Path):
    raw = bytearray(f.read_bytes()); raw[len(raw) // 2] ^= 0xFF; f.write_bytes(bytes(raw))

DAMAGE = {
    'garbled distcp (same size)': lambda ck: _flip(ck / 'dcp' / '__0_0.distcp'),
    'truncated distcp': lambda ck: (ck / 'dcp' / '__0_0.distcp').write_bytes((ck / 'dcp' / '__0_0.distcp').read_bytes()[:100]),
    'empty distcp': lambda ck: (ck / 'dcp' / '__0_0.distcp').write_bytes(b''),
    'missing .metadata': lambda ck: (ck / 'dcp' / '.metadata').unlink(),
    'broken meta.json': lambda ck: (ck / 'meta.json').write_text('{"step": '),
    'truncated rng': lambda ck: (ck / 'rng_rank0.safetensors').write_bytes(b'\x00' * 10),
}


@pytest.mark.parametrize('damage', list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back(reference, tmp_path, damage):
    out = tmp_path / 'run'
    args = MICRO + ['stages.0.steps=8', 'checkpoint.every=1', 'checkpoint.keep=3']
    assert train(args + ['max_steps=6'], out).returncode == 0
    DAMAGE[damage](out / 'checkpoints' / 'step_000006')
    r = train(args + ['--resume'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Traceback' not in r.stderr and 'skipping checkpoint' in r.stderr and 'step_000006' in r.stderr, r.stderr
    assert 'resumed from' in r.stdout and 'at step 5' in r.stdout
    assert same(final_weights(out, 8), reference)


def test_crafted_pickle_is_never_loaded(tmp_path):
    "An old-format rng_rank0.pt that would run code when unpickled: resume does not unpickle it."
    out, marker = tmp_path / 'run', tmp_path / 'pwned'
    args = MICRO + ['stages.0.steps=4', 'checkpoint.every=2']
    assert train(args + ['max_steps=2'], out).returncode == 0
    ck = out / 'checkpoints' / 'step_000002'

    class Evil:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    (ck / 'rng_rank0.pt').write_bytes(pickle.dumps({'torch': Evil()}))
    (ck / 'rng_rank0.safetensors').unlink()
    man = json.loads((ck / 'manifest.json').read_text()); man.pop('rng_rank0.safetensors')
    (ck / 'manifest.json').write_text(json.dumps(man))                    # as an older checkpoint would look
    r = train(args + ['--resume'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not marker.exists()
    assert 'RNG state as a pickle' in r.stderr


def _in_process(argv):
    from flite_nb.train import main
    return main(argv)


def test_nan_stops_with_exit_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from flite_nb.recipes import register_stage_kind, STAGE_KINDS
    from flite_nb.training import Pretrain

    class NaNFrom3(Pretrain):
        name = 'test_nan_from_3'
        def step(self, run, i, local):
            if local < 3: return super().step(run, i, local)
            run.begin_step(i, local)
            loss = sum(p.sum() for p in run.model.parameters()) * float('nan'); loss.backward()
            return run.end_step(loss.detach())
    register_stage_kind(NaNFrom3())
    try:
        out = tmp_path / 'run'
        rc = _in_process(['--out', str(out), *MICRO, 'threads=1', 'stages.0.steps=20', 'stages.0.kind=test_nan_from_3',
                          'checkpoint.every=2', 'checkpoint.keep=2', 'max_nonfinite=2'])
    finally: STAGE_KINDS.pop('test_nan_from_3', None)
    err = capsys.readouterr().err
    assert rc == 3, err
    assert '3 non-finite steps in a row' in err and err.strip().count('\n') == 0, err
    cks = sorted(p.name for p in (out / 'checkpoints').glob('step_*'))
    assert cks == ['step_000002'], cks                                      # never rotated away by a NaN checkpoint
    w = load_file(str(out / 'checkpoints' / 'step_000002' / 'model.safetensors'))
    assert all(torch.isfinite(v).all() for v in w.values())


def test_disk_full_during_checkpoint(tmp_path, capsys):
    out = tmp_path / 'run'
    args = ['--out', str(out), *MICRO, 'threads=1', 'stages.0.steps=4', 'checkpoint.every=2']
    assert _in_process(args + ['max_steps=2']) == 0
    import flite_nb.checkpoint as ck
    real = ck.save_file
    def full(tensors, path, *a, **kw):
        if 'step_000004' in str(path): raise OSError(errno.ENOSPC, 'No space left on device')
        return real(tensors, path, *a, **kw)
    with unittest.mock.patch.object(ck, 'save_file', full):
        rc = _in_process(args + ['--resume'])
    err = capsys.readouterr().err
    assert rc == 1 and 'no space left on the device' in err and 'step_000002' in err, err
    assert sorted(p.name for p in (out / 'checkpoints').iterdir()) == ['step_000002']
    assert ck.verify_checkpoint(out / 'checkpoints' / 'step_000002') is None


@pytest.mark.parametrize('override,msg', [
    ('ema.decay=1.5', 'ema.decay must be in [0, 1)'),
    ('threads=-1', 'threads must be >= 0'),
    ('val.n_samples=0', 'val.n_samples must be >= 1'),
    ('device=cuda', 'no CUDA GPU'),
    ('checkpoint.every=-5', 'checkpoint.every must be >= 0'),
    ('checkpoint.keep=-1', 'checkpoint.keep must be >= 0'),
    ('stages.0.lr=inf', 'lr must be finite and > 0'),
    ('data.source=folder', 'needs data.path'),
    ('timesteps.shift=flite_literal', 'cannot end a sampling grid'),
])
def test_config_errors_are_one_line(tmp_path, capsys, override, msg):
    if override == 'device=cuda' and torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    rc = _in_process(['--out', str(tmp_path / 'bad'), '--preset', 'micro', override])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.strip().count('\n') == 0, err
    assert not (tmp_path / 'bad').exists()                                   # nothing was written or loaded


def test_missing_data_path_and_bad_yaml_are_one_line(tmp_path, capsys):
    assert _in_process(['--out', str(tmp_path / 'a'), '--preset', 'micro', 'data.source=folder', 'data.path=/nonexistent']) == 2
    (tmp_path / 'c.yaml').write_text('optim: [1, 2\n')
    assert _in_process(['--out', str(tmp_path / 'b'), '--config', str(tmp_path / 'c.yaml')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and 'does not exist' in err[0] and 'not valid YAML' in err[1], err


def test_resume_with_another_preset_is_refused(tmp_path, capsys):
    out = tmp_path / 'run'
    assert _in_process(['--out', str(out), *MICRO, 'threads=1', 'stages.0.steps=2']) == 0
    assert _in_process(['--out', str(out), '--preset', 'tiny', '--resume']) == 2
    assert 'was made with --preset micro' in capsys.readouterr().err
    import warnings
    from flite_nb.sampling import FlitePipeline
    (out / 'pipeline' / 'sampling.json').unlink()                           # a pipeline folder that lost its sampling.json
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); pipe = FlitePipeline.from_folder(out / 'pipeline')
    assert (pipe.config.height, pipe.config.width) == (16, 16)               # the training size, from the weights' metadata
    assert any('training size recorded in the weights' in str(x.message) for x in w)


def test_batch_not_divisible_by_world_is_one_line_before_loading(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'flite_nb.train',
                        '--out', str(tmp_path / 'w'), *MICRO, 'stages.0.batch_size=7'], capture_output=True, text=True, timeout=240, env=ENV)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if 'config error' in l]
    assert lines and 'does not split over 2 ranks' in lines[0], r.stderr[-2000:]
    assert 'Loading weights' not in r.stderr, r.stderr[-2000:]          # before the text encoder loads (torchrun adds its own report)


def _bad_folder(d: Path, n_good=5):
    "n_good good images, one with a non-UTF-8 caption, one without caption, one truncated after a valid header; one unreadable, one 25:1 strip."
    import io
    from PIL import Image
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n_good): Image.new('RGB', (24, 20), (40 * i, 90, 30)).save(d / f'g{i}.png'); (d / f'g{i}.txt').write_text(f'a green square {i}')
    Image.new('RGB', (20, 20), (200, 0, 0)).save(d / 'utf.png'); (d / 'utf.txt').write_bytes(b'caf\xe9 red')
    Image.new('RGB', (20, 20), (0, 0, 200)).save(d / 'nocap.png')
    b = io.BytesIO(); Image.new('RGB', (20, 20), (9, 9, 9)).save(b, 'PNG'); (d / 'cut.png').write_bytes(b.getvalue()[:60]); (d / 'cut.txt').write_text('cut')
    (d / 'junk.png').write_text('<html>not an image</html>'); (d / 'junk.txt').write_text('junk')
    Image.new('RGB', (500, 20), (0, 0, 0)).save(d / 'strip.png'); (d / 'strip.txt').write_text('a strip')


def test_bad_data_is_counted_exactly(tmp_path):
    data, out = tmp_path / 'data', tmp_path / 'run'
    _bad_folder(data)
    env = {k: v for k, v in ENV.items() if k != 'PYTHONWARNINGS'}
    r = train(MICRO + ['stages.0.steps=2', 'data.source=folder', f'data.path={data}', f'data.val_path={data}', 'val.n_samples=8',
                       'checkpoint.every=0'], out, env=env)   # validation on the same files: all 8 usable ones train
    assert r.returncode == 0, r.stderr[-3000:]
    assert ('10 files, 8 usable, 2 skipped (1 unreadable, 1 extreme_aspect); captions: 1 missing, 0 empty, 1 invalid UTF-8'
            in r.stdout), r.stdout[-3000:]
    bad = [json.loads(l) for l in (out / 'bad_samples.jsonl').read_text().splitlines()]
    assert sorted((Path(b['path']).name, b['reason']) for b in bad) == [('cut.png', 'undecodable'), ('junk.png', 'unreadable'),
                                                                       ('strip.png', 'extreme_aspect')], bad
    last = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines() if 'train/loss' in l][-1]
    assert last['train/data/bad_files'] == 3 and last['train/data/replaced'] >= 1, last
    assert r.stderr.count('skipping') == 1, r.stderr                          # warned once for the one file found while loading


def test_mostly_bad_or_all_bad_data_stops_before_training(tmp_path, capsys):
    data = tmp_path / 'data'
    _bad_folder(data, n_good=0)                                             # 2 unusable of 5: under the 50% limit...
    assert _in_process(['--out', str(tmp_path / 'a'), *MICRO, 'threads=1', 'data.source=folder', f'data.path={data}',
                        'data.max_bad_frac=0.3']) == 2                        # ...but over a 30% one
    (tmp_path / 'junk').mkdir(); (tmp_path / 'junk' / 'x.png').write_text('no')
    assert _in_process(['--out', str(tmp_path / 'b'), *MICRO, 'threads=1', 'data.source=folder', f'data.path={tmp_path / "junk"}']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all('files are unusable' in l for l in err), err
    assert not (tmp_path / 'a' / 'checkpoints').exists()


def test_cut_cache_shards_are_rebuilt(tmp_path):
    "A text-cache shard cut short (a kill before writes were atomic, or a disk fault) is dropped and its captions encoded again."
    import warnings
    from flite_nb.text import TextEncoder, TextEncoderConfig, TextCache
    enc = TextEncoder(TextEncoderConfig(name='minilm', layer=1, max_length=8))
    c = TextCache(tmp_path, enc); c.add(['a cat']); ref = c.get(['a cat'])['context']
    f = next(tmp_path.glob('text_*.safetensors')); f.write_bytes(f.read_bytes()[:40])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); c2 = TextCache(tmp_path, enc)
    assert any('unreadable' in str(x.message) for x in w) and 'a cat' not in c2
    assert torch.equal(c2.get(['a cat'])['context'], ref)
    assert not list(tmp_path.glob('*.tmp'))
