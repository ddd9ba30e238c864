"`python -m flite_nb.sampling` samples a pipeline folder, writes PNGs and a grid, deterministically by seed, and rejects bad sizes."
import json, subprocess, sys
from pathlib import Path
from PIL import Image

from flite_nb.sampling import tiny_pipeline, FlitePipeline


def _run(*args):
    return subprocess.run([sys.executable, '-m', 'flite_nb.sampling', *map(str, args)], capture_output=True, text=True, timeout=300)


def test_sample_cli_writes_pngs_and_grid(tmp_path):
    tiny_pipeline(tmp_path / 'pipeline', size=16)
    for out in ('a', 'b'):
        r = _run('--pipeline', tmp_path / 'pipeline', '--prompt', 'a red apple', '--prompt', 'a cat face', '--n', 2,
                 '--steps', 2, '--seed', 3, '--out', tmp_path / out)
        assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / 'a').glob('*.png'))
    assert files == ['grid.png'] + [f'sample_{k:03d}.png' for k in range(4)]
    assert Image.open(tmp_path / 'a' / 'sample_000.png').size == (16, 16)
    assert Image.open(tmp_path / 'a' / 'grid.png').size == (2 * 16 + 6, 2 * 16 + 6)
    for k in range(4):   # same seed, same images
        assert (tmp_path / 'a' / f'sample_{k:03d}.png').read_bytes() == (tmp_path / 'b' / f'sample_{k:03d}.png').read_bytes()
    assert json.loads((tmp_path / 'a' / 'prompts.json').read_text())['n'] == 2


def test_sample_cli_bad_size(tmp_path):
    tiny_pipeline(tmp_path / 'pipeline', size=16)
    r = _run('--pipeline', tmp_path / 'pipeline', '--prompt', 'x', '--height', 15, '--out', tmp_path / 'o')
    assert r.returncode != 0 and 'multiples of 2' in r.stderr


def test_sample_loads_training_style_sampling_json(tmp_path):
    "The training command writes extra keys (resolution, a nested timestep config, recipe...): they load without warnings."
    pipe = tiny_pipeline(tmp_path / 'pipeline', size=16)
    (tmp_path / 'pipeline' / 'sampling.json').write_text(json.dumps(dict(
        resolution=[24, 16], shift='sd3', shift_value=2.0, base_size=32, patch=2, steps=3, cfg_scale=2.5,
        timesteps=dict(sampler='logit_normal', shift='sd3', shift_value=2.0), ema=True, step=10, recipe='tiny')))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        p = FlitePipeline.from_folder(tmp_path / 'pipeline', text_encoder=pipe.text_encoder)
    c = p.config
    assert (c.height, c.width, c.shift, c.shift_value, c.steps, c.cfg_scale) == (24, 16, 'sd3', 2.0, 3, 2.5)
    assert p('a red apple', progress=False)[0].size == (16, 24)


def test_sample_cli_errors_are_one_line(tmp_path):
    "Bad guidance, non-finite weights and a missing folder: one line on stderr, exit 2, no images."
    from safetensors.torch import load_file, save_file
    tiny_pipeline(tmp_path / 'pipeline', size=16)
    for args, msg in [(['--cfg', 'nan'], '--cfg must be a finite number'), (['--cfg', '-1'], '--cfg must be a finite number')]:
        r = _run('--pipeline', tmp_path / 'pipeline', '--prompt', 'x', '--steps', 1, '--out', tmp_path / 'o', *args)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
    r = _run('--pipeline', tmp_path / 'nope', '--prompt', 'x', '--out', tmp_path / 'o')
    assert r.returncode == 2 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    f = tmp_path / 'pipeline' / 'model' / 'model.safetensors'
    sd = load_file(str(f)); k = next(iter(sd)); sd[k] = sd[k].float().fill_(float('nan')).to(sd[k].dtype); save_file(sd, str(f))
    r = _run('--pipeline', tmp_path / 'pipeline', '--prompt', 'x', '--steps', 1, '--out', tmp_path / 'o')
    assert r.returncode == 2 and 'NaN/inf' in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
    assert not (tmp_path / 'o').exists()


def test_missing_sampling_json_warns_with_the_size(tmp_path):
    import warnings
    tiny_pipeline(tmp_path / 'pipeline', size=16)
    (tmp_path / 'pipeline' / 'sampling.json').unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        pipe = FlitePipeline.from_folder(tmp_path / 'pipeline')
    assert any('no sampling.json' in str(x.message) and f'{pipe.config.height}x{pipe.config.width}' in str(x.message) for x in w)


def test_sampling_beyond_the_training_size_warns_once():
    "Plain RoPE past the training grid repeats content: the pipeline says so once and names the extrapolation options."
    import warnings
    from flite_nb.sampling import tiny_pipeline
    p = tiny_pipeline()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for hw in ((16, 32), (16, 32), (16, 16)): p('a cat', height=hw[0], width=hw[1], steps=2, progress=False)
        p('a cat', height=16, width=32, steps=2, progress=False, rope_method='vision_ntk')
    msgs = [str(x.message) for x in w if 'beyond' in str(x.message)]
    assert len(msgs) == 1 and "rope_method='vision_ntk'" in msgs[0], msgs


def test_console_scripts_are_installed():
    "Every console script of settings.ini is on the PATH after `pip install -e .` and answers --help."
    import configparser, shutil, subprocess
    c = configparser.ConfigParser(delimiters=['=']); c.read(Path(__file__).parent.parent / 'settings.ini')
    names = [s.split('=')[0] for s in c['DEFAULT']['console_scripts'].split()]
    assert {'flite-train', 'flite-sample', 'flite-eval', 'flite-data', 'flite-precompute'} <= set(names)
    for n in names:
        assert shutil.which(n), f"{n} is not installed: pip install -e ."
        r = subprocess.run([n, '--help'], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and 'usage' in r.stdout.lower(), (n, r.stdout[-500:], r.stderr[-500:])
