"Online GRPO (chapter 61): the SDE step against its Gaussian, a user reward from the command line, and two torchrun ranks = one process."
import json, math, os, subprocess, sys
from pathlib import Path
import pytest, torch

from flite_nb.grpo import sde_step, sample_sde, group_advantages, grpo_objective

torch.set_num_threads(1)
REWARD = "import torch\ndef brightness(images, scenes):\n    return images.mean((1, 2, 3))\n"
STAGES = ['stages=[{"name": "pre", "steps": 2, "resolution": [16, 16], "batch_size": 8, "lr": 0.001, "warmup": 1}, '
          '{"name": "rl", "kind": "grpo", "steps": 3, "resolution": [16, 16], "batch_size": 8, "lr": 0.0005, "warmup": 1, '
          '"rl": {"group": 4, "sample_steps": 3, "reuse": 2, "beta": 0.0, "reward": "user_reward:brightness"}}]']
MICRO = ['--preset', 'micro', 'device=cpu', 'val.every=0', 'val.sample_every=0', 'checkpoint.every=0', 'precision=fp32']


def run_train(args, out, tmp, nproc=0):
    (tmp / 'user_reward.py').write_text(REWARD)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore', 'PYTHONPATH': f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    pre = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc else [sys.executable]
    return subprocess.run(pre + ['-m', 'flite_nb.train', '--out', str(out), *args], capture_output=True, text=True, timeout=300, env=env)


def grpo_metrics(out):
    return [json.loads(l) for l in Path(out, 'metrics.jsonl').read_text().splitlines() if 'train/reward' in l]


def test_sde_reduces_to_euler_and_its_log_prob_is_gaussian():
    x, v = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert torch.equal(sde_step(x, v, 0.5, 0.25, 0.0, 0.9)[0], x - 0.25 * v)
    xn, lp, mean, std = sde_step(x, v, 0.5, 0.25, 0.7, 0.9, noise=torch.randn_like(x))
    assert torch.allclose(lp, torch.distributions.Normal(mean, std).log_prob(xn).flatten(1).mean(1), atol=1e-5)
    with pytest.raises(ValueError, match='noise must be'):
        sample_sde(lambda x, t: x, torch.randn(2, 2), [1., .5, 0.], noise=torch.randn(3, 2, 2))


def test_advantages_and_objective():
    adv = group_advantages(torch.tensor([1., 0., 1., 0.]), 2)
    assert torch.allclose(adv, torch.tensor([.7071, -.7071, .7071, -.7071]), atol=1e-3)
    loss, frac = grpo_objective(torch.zeros(4), torch.zeros(4), adv)
    assert abs(loss.item()) < 1e-6 and frac.item() == 0


def test_grpo_stage_from_the_command_line_and_under_torchrun(tmp_path):
    r = run_train(MICRO + STAGES, tmp_path / 'one', tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a = grpo_metrics(tmp_path / 'one')
    assert [x['step'] for x in a] == [3, 4, 5]
    assert all(math.isfinite(x['train/loss']) and math.isfinite(x['train/reward']) for x in a)
    cfg = json.loads((tmp_path / 'one' / 'config.json').read_text())
    assert cfg['stages'][1]['rl']['reward'] == 'user_reward:brightness' and cfg['stages'][1]['caption_dropout'] is None
    r = run_train(MICRO + STAGES + ['dist.strategy=ddp'], tmp_path / 'two', tmp_path, nproc=2)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    b = grpo_metrics(tmp_path / 'two')
    for k in ('train/loss', 'train/reward', 'train/grad_norm', 'train/clip_frac'):
        va, vb = [x[k] for x in a], [x[k] for x in b]
        assert torch.allclose(torch.tensor(va), torch.tensor(vb), rtol=1e-4, atol=1e-6), (k, va, vb)


def test_bad_reward_is_one_line(tmp_path):
    r = run_train(MICRO + [STAGES[0].replace('user_reward:brightness', 'no_such_module:f')], tmp_path / 'bad', tmp_path)
    assert r.returncode != 0 and 'rl.reward' in (r.stdout + r.stderr) and 'Traceback' not in r.stderr
