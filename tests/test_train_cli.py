"The training entry point: torchrun DDP/FSDP2 match a single process, exact resume, FSDP 2->1 ranks, SIGTERM, config errors."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
MICRO = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0']


def run(args, out, nproc=0, timeout=240, **kw):
    pre = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc else [sys.executable]
    return subprocess.run(pre + ['-m', 'flite_nb.train', '--out', str(out), *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, **kw)


def losses(out):
    recs = [json.loads(l) for l in Path(out, 'metrics.jsonl').read_text().splitlines()]
    return [r['train/loss'] for r in recs if 'train/loss' in r]


def weights(ck):
    return load_file(str(Path(ck) / 'model.safetensors'))


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp('single')
    r = run(MICRO + ['stages.0.steps=3'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize('strategy', ['ddp', 'fsdp'])
def test_torchrun_matches_single_process(single, tmp_path, strategy):
    out = tmp_path / strategy
    r = run(MICRO + ['stages.0.steps=3', f'dist.strategy={strategy}'], out, nproc=2)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f'2 process(es), strategy {strategy}' in r.stdout
    a, b = losses(single), losses(out)
    assert len(a) == len(b) == 3
    # same global batch, same samples, noise and timesteps: the loss trajectories agree to float rounding
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5), (a, b)
    wa, wb = weights(Path(single, 'checkpoints/step_000003')), weights(Path(out, 'checkpoints/step_000003'))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


def test_resume_is_exact(tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    assert run(MICRO + ['stages.0.steps=4'], full).returncode == 0
    r = run(MICRO + ['stages.0.steps=4', 'max_steps=2'], part)
    assert r.returncode == 0 and (part / 'checkpoints/step_000002').exists(), r.stderr[-3000:]
    r = run(MICRO + ['stages.0.steps=4', '--resume'], part)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resumed from' in r.stdout and 'at step 2' in r.stdout
    for name in ('model.safetensors', 'ema.safetensors'):
        a, b = load_file(str(full / 'checkpoints/step_000004' / name)), load_file(str(part / 'checkpoints/step_000004' / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert losses(full) == losses(part)


def test_fsdp_checkpoint_loads_on_one_rank(tmp_path):
    out = tmp_path / 'fsdp'
    r = run(MICRO + ['stages.0.steps=4', 'max_steps=2', 'dist.strategy=fsdp'], out, nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = out / 'checkpoints/step_000002'
    assert json.loads((ck / 'meta.json').read_text())['world_size'] == 2
    # a single process reads the 2-rank DCP shards (resharding them) and continues
    from flite_nb.train import build_config
    from flite_nb.training import Trainer
    from flite_nb.checkpoint import load_checkpoint
    cfg = build_config('micro', overrides=['device=cpu', 'stages.0.steps=4', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0'])
    t = Trainer(cfg, out, resume=True, install_signals=False, quiet=True)
    assert t.step == 2
    w = weights(ck)
    assert all(torch.equal(p.detach(), w[n]) for n, p in t.model.named_parameters())
    assert len(t.opt.state) == len(list(t.model.parameters()))        # optimiser moments came back too
    res = t.fit()
    assert res['step'] == 4 and (out / 'checkpoints/step_000004/model.safetensors').exists()
    assert (out / 'pipeline/model/model.safetensors').exists()


def test_sigterm_saves_and_resumes(tmp_path):
    out = tmp_path / 'sig'
    args = MICRO + ['stages.0.steps=400']
    p = subprocess.Popen([sys.executable, '-m', 'flite_nb.train', '--out', str(out), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    m = out / 'metrics.jsonl'
    t0 = time.time()
    while not (m.exists() and len(m.read_text().splitlines()) >= 2):
        assert p.poll() is None and time.time() - t0 < 120, 'the run did not start'
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 75, stderr[-3000:]                         # stopped, resumable (EX_TEMPFAIL)
    assert 'SIGTERM' in stdout
    cks = sorted((out / 'checkpoints').glob('step_*'))
    assert len(cks) == 1 and not cks[0].name.endswith('.tmp')
    k = json.loads((cks[0] / 'meta.json').read_text())['step']
    r = run(MICRO + [f'stages.0.steps={k + 2}', '--resume'], out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'at step {k}' in r.stdout and f'finished at step {k + 2}' in r.stdout


@pytest.mark.parametrize('override,msg', [
    ('optim.lrr=1', 'unknown config key optim.lrr'),
    ('seed=abc', 'seed: expected an int'),
    ('stages.0.resolution=[30,30]', 'resolution 30x30 is not divisible by 4'),
])
def test_config_errors_are_one_line(tmp_path, override, msg):
    r = run([override], tmp_path / 'bad', timeout=120)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    assert msg in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
