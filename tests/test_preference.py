"Preference losses (oracles, f at 0, gradient flow), the global baseline under torchrun, preference/SFT stages of the train command, post-hoc EMA."
import json, math, os, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file

from flite_nb.preference import (mapo_f, log_odds, mapo_loss, grpo_loss, batch_relative, per_sample_losses, preference_loss,
                                 posthoc_ema, posthoc_ema_coefficients, preference_main)
from flite_nb.recipes import PreferenceConfig
from flite_nb.training import batch_loss
from flite_nb.model import DiTConfig, FLiteDiT, perturb_zero_init

torch.set_num_threads(1)
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
MICRO = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0']
D = torch.float64


@pytest.mark.parametrize('lw,ll,want', [(0.1, 0.2, 0.1000000000), (0.1, 0.1001, 0.1680931140), (0.2, 0.1, 2.6375130176)])
def test_mapo_oracles(lw, ll, want):
    assert abs(mapo_loss(torch.tensor([lw], dtype=D), torch.tensor([ll], dtype=D), beta=0.1, T=1000., s=0.5).item() - want) < 1e-9


def test_grpo_oracle():
    Lw, Ll = torch.tensor([.10, .12, .15, .11], dtype=D), torch.tensor([.11, .12, .13, .20], dtype=D)
    assert abs(grpo_loss(Lw, Ll, beta=0.1, alpha=1000., s=0.5).item() - 0.5484767478949883) < 1e-9
    assert abs(grpo_loss(Lw.float(), Ll.float()).item() - 0.5484767) < 1e-5


def test_f_at_zero_and_tiny():
    assert mapo_f(torch.zeros(())).item() == 1.0
    L = torch.tensor([0., 1e-30, 1e-12, 1e-8, 1e-5, 1e-4, 3e-4], requires_grad=True)
    y = mapo_f(L)
    g, = torch.autograd.grad(y.sum(), L)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    assert torch.allclose(g, torch.full_like(g, -0.25), atol=1e-3)            # f'(L) -> -s/2 near 0
    x = torch.tensor([1e-4, 3e-4, 1e-3], dtype=D)                             # both branches agree at the switch
    assert torch.allclose(mapo_f(x), 0.5 * x / torch.expm1(0.5 * x), rtol=0, atol=1e-15)


def test_gradient_flows_only_through_the_losses():
    torch.manual_seed(0)
    m = perturb_zero_init(FLiteDiT(DiTConfig(dim=32, depth=1, heads=2, patch=2, text_dim=8, n_registers=2)), 0.1, 0)
    xw, xl, e = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.rand(4)
    txt = dict(context=torch.randn(4, 5, 8), context_mask=torch.ones(4, 5, dtype=torch.bool))
    for cfg in (PreferenceConfig(loss='mapo', temperature=10.), PreferenceConfig(loss='grpo', temperature=10.),
                PreferenceConfig(loss='grpo', temperature=1., whiten=True)):
        Lw, Ll = per_sample_losses(m, 2, xw, xl, e, t, txt)
        loss, st = preference_loss(Lw, Ll, cfg)
        gw, gl = torch.autograd.grad(loss, (Lw, Ll), retain_graph=True)
        loss.backward(retain_graph=True); a = [p.grad.clone() for p in m.parameters()]; m.zero_grad()
        torch.autograd.backward([Lw, Ll], [gw, gl]); b = [p.grad.clone() for p in m.parameters()]; m.zero_grad()
        assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b)), cfg
    _, mean, std = batch_relative(log_odds(Lw, Ll), whiten=True)
    assert not mean.requires_grad and not std.requires_grad
    # centring with a detached mean: dLoss/dL_w[i] is the per-pair MaPO gradient at the shifted log-odds (no 1/N cross terms)
    Lw0, Ll0 = Lw.detach().double().requires_grad_(), Ll.detach().double()
    lo = log_odds(Lw0, Ll0); c = lo.detach().mean()
    l = Lw0.mean() - 0.1 * F.logsigmoid(10 * (lo - c)).mean()
    g1, = torch.autograd.grad(l, Lw0)
    g2, = torch.autograd.grad(grpo_loss(Lw0, Ll0, alpha=10.), Lw0)
    assert torch.allclose(g1, g2, atol=1e-12)
    # per_sample_losses is one forward of the two halves
    assert torch.allclose(Lw, batch_loss(m, 2, xw, e, t, txt, reduction='none'), atol=1e-5)


DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys, torch, torch.distributed as dist
    from flite_nb.preference import batch_relative
    dist.init_process_group('gloo')
    r = dist.get_rank()
    lo = torch.tensor([[0.1, 0.3, -0.2], [0.5, 0.7]][r], dtype=torch.float64)    # unequal per-rank counts, different values
    rel, mean, std = batch_relative(lo, whiten=True)
    open(os.path.join(sys.argv[1], f'rank{r}.json'), 'w').write(json.dumps(dict(rank=r, mean=mean.item(), std=std.item(), rel=rel.tolist())))
    dist.destroy_process_group()
""")


def test_centring_uses_the_global_mean_under_torchrun(tmp_path):
    f = tmp_path / 'ddp_baseline.py'; f.write_text(DDP_SCRIPT)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(f), str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads((tmp_path / f'rank{k}.json').read_text()) for k in (0, 1)]    # each rank's own view
    assert len(res) == 2
    allv = torch.tensor([0.1, 0.3, -0.2, 0.5, 0.7], dtype=D)
    assert res[0]['mean'] == res[1]['mean'] and res[0]['std'] == res[1]['std']      # the same baseline on both ranks
    assert abs(res[0]['mean'] - allv.mean().item()) < 1e-12                       # the mean over the union, not of rank means
    assert abs(res[0]['std'] - allv.std().item()) < 1e-12
    rel = torch.tensor(res[0]['rel'] + res[1]['rel'], dtype=D)
    assert torch.allclose(rel, (allv - allv.mean()) / (allv.std() + 1e-6), atol=1e-12)


def run_train(args, out, nproc=0, timeout=240):
    pre = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc else [sys.executable]
    return subprocess.run(pre + ['-m', 'flite_nb.train', '--out', str(out), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def metrics(out):
    return [json.loads(l) for l in Path(out, 'metrics.jsonl').read_text().splitlines()]


PREF_STAGES = ['stages=[{"name": "sft", "kind": "sft", "steps": 2, "resolution": [16, 16], "batch_size": 8, "lr": 0.001, "warmup": 1, '
               '"subset": {"min_caption_words": 2}}, {"name": "pref", "kind": "preference", "steps": 3, "resolution": [16, 16], '
               '"batch_size": 4, "lr": 0.0005, "warmup": 1, "caption_dropout": 0.0, "pref": {"loss": "grpo"}}]']


@pytest.fixture(scope='module')
def pref_single(tmp_path_factory):
    out = tmp_path_factory.mktemp('pref1')
    r = run_train(MICRO + PREF_STAGES, out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out, r


def test_train_command_runs_sft_and_preference_stages(pref_single):
    out, r = pref_single
    assert 'SFT subset of' in r.stdout
    recs = metrics(out)
    pref = [x for x in recs if 'train/accuracy' in x]
    assert [x['step'] for x in pref] == [3, 4, 5]
    for x in pref:
        assert 0 <= x['train/accuracy'] <= 1 and math.isfinite(x['train/loss']) and math.isfinite(x['train/baseline'])
    assert any('val/loss' in x for x in recs)                                     # validation keeps working
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg['stages'][1]['pref']['loss'] == 'grpo' and cfg['stages'][0]['subset']['min_caption_words'] == 2
    assert (out / 'pipeline' / 'model' / 'model.safetensors').exists()


def test_preference_stage_under_torchrun_matches_one_process(pref_single, tmp_path):
    out1, _ = pref_single
    r = run_train(MICRO + PREF_STAGES + ['dist.strategy=ddp'], tmp_path / 'ddp', nproc=2)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a = [x for x in metrics(out1) if 'train/loss' in x]
    b = [x for x in metrics(tmp_path / 'ddp') if 'train/loss' in x]
    for k in ('train/loss', 'train/baseline', 'train/L_w', 'train/accuracy'):
        va, vb = [x.get(k, 0.) for x in a], [x.get(k, 0.) for x in b]
        assert torch.allclose(torch.tensor(va), torch.tensor(vb), rtol=1e-4, atol=1e-5), (k, va, vb)


def test_init_from_and_config_errors(pref_single, tmp_path, capsys):
    from flite_nb.train import main
    out1, _ = pref_single
    r = run_train(MICRO + [f'init_from={tmp_path / "none"}'], tmp_path / 'bad')                  # a one-line error, before any loading
    assert r.returncode == 2 and 'python -m flite_nb.train' in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
    assert main(['--out', str(tmp_path / 'init')] + MICRO + [f'init_from={out1}', 'stages.0.steps=1']) == 0
    assert 'initialised from' in capsys.readouterr().out
    for args, msg in [([f'init_from={out1}', 'model.dim=32', 'optim.base_width=32'], 'does not fit the model'),
                      (['stages.0.kind=sft', 'stages.0.subset.min_caption_words=40'], 'the subset filter kept 0 of 256 samples'),
                      (['stages.0.kind=preference', 'stages.0.pref.loss=dpo'], 'pref.loss must be one of')]:
        assert main(['--out', str(tmp_path / 'bad2')] + MICRO + args) == 2
        assert msg in capsys.readouterr().err


def test_tiny_post_recipe_resolves():
    from flite_nb.train import build_config
    c = build_config('tiny-post', overrides=['stages.1.pref.beta=0.2'])
    assert c.init_from == 'runs/tiny' and [s.kind for s in c.stages] == ['sft', 'preference'] and c.stages[1].pref.beta == 0.2


def test_posthoc_ema_coefficients():
    assert posthoc_ema_coefficients(5, 'uniform') == pytest.approx([0.2] * 5)
    w = 0.3
    assert posthoc_ema_coefficients(4, w) == pytest.approx([(1 - w) ** 3] + [w * (1 - w) ** (3 - i) for i in range(1, 4)])
    assert sum(posthoc_ema_coefficients(7, 0.9)) == pytest.approx(1)
    assert posthoc_ema_coefficients(1, 0.5) == [1.0]


def fake_run(root, values, shape=(3,)):
    for step, v in values.items():
        ck = root / 'checkpoints' / f'step_{step:06d}'; ck.mkdir(parents=True)
        save_file({'w': torch.full(shape, float(v)), 'b': torch.tensor([v, 2 * v])}, str(ck / 'model.safetensors'))
        (ck / 'meta.json').write_text(json.dumps({'step': step}))
    (root / 'pipeline' / 'model').mkdir(parents=True, exist_ok=True)
    (root / 'pipeline' / 'model' / 'config.json').write_text('{}')
    (root / 'pipeline' / 'sampling.json').write_text('{}')


def test_posthoc_ema_weights_and_command(tmp_path):
    fake_run(tmp_path / 'run', {30: 9., 10: 1., 20: 2.})                           # folders sorted by step, not by listing
    cks = sorted((tmp_path / 'run' / 'checkpoints').iterdir(), reverse=True)
    assert torch.allclose(posthoc_ema(cks, 'uniform')['w'], torch.full((3,), 4.))
    assert torch.allclose(posthoc_ema(cks, 0.5)['b'], torch.tensor([0.25 * 1 + 0.25 * 2 + 0.5 * 9, 2 * (0.25 * 1 + 0.25 * 2 + 0.5 * 9)]))
    assert preference_main(['posthoc-ema', '--run', str(tmp_path / 'run'), '--weight', 'uniform', '--out', str(tmp_path / 'out')]) == 0
    assert torch.allclose(load_file(str(tmp_path / 'out' / 'model' / 'model.safetensors'))['w'], torch.full((3,), 4.))
    info = json.loads((tmp_path / 'out' / 'posthoc_ema.json').read_text())
    assert info['steps'] == [10, 20, 30] and info['coefficients'] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize('args,msg', [
    (['--weight', '1.5'], "weight must be 'uniform' or a number in (0, 1]"),
    (['--weight', 'abc'], "weight must be 'uniform' or a number in (0, 1]"),
    (['--checkpoints'], None),
    (['--ema'], 'ema.safetensors does not exist'),
])
def test_posthoc_ema_command_errors(tmp_path, capsys, args, msg):
    fake_run(tmp_path / 'run', {1: 1., 2: 2.})
    if msg is None:                                                               # mismatched shapes
        fake_run(tmp_path / 'other', {3: 3.}, shape=(4,))
        args = ['--checkpoints', str(tmp_path / 'run/checkpoints/step_000001'), str(tmp_path / 'other/checkpoints/step_000003')]
        msg = 'differs in shape at w'
    assert preference_main(['posthoc-ema', '--run', str(tmp_path / 'run'), '--out', str(tmp_path / 'o'), *args]) == 2
    assert msg in capsys.readouterr().err


def test_posthoc_ema_no_checkpoints(tmp_path, capsys):
    (tmp_path / 'run' / 'pipeline' / 'model').mkdir(parents=True); (tmp_path / 'run' / 'pipeline' / 'model' / 'config.json').write_text('{}')
    assert preference_main(['posthoc-ema', '--run', str(tmp_path / 'run'), '--out', str(tmp_path / 'o')]) == 2
    assert 'no checkpoints under' in capsys.readouterr().err
    assert preference_main(['posthoc-ema', '--run', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')]) == 2
    assert 'not a finished run folder' in capsys.readouterr().err
