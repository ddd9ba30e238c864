"`python -m flite_nb.evaluation` evaluates a pipeline folder with the recogniser of its run's glyphs and writes one JSON table."
import json, subprocess, sys

from flite_nb.sampling import tiny_pipeline


def test_eval_cli_writes_metrics(tmp_path):
    run = tmp_path / 'run'
    tiny_pipeline(run / 'pipeline', size=32)
    # the run's data settings, as the training command writes them next to the pipeline folder
    (run / 'config.json').write_text(json.dumps(dict(data=dict(openmoji=dict(n_glyphs=8, max_glyphs=2, heldout_frac=0.3)))))
    out = tmp_path / 'metrics.json'
    r = subprocess.run([sys.executable, '-m', 'flite_nb.evaluation', '--pipeline', str(run / 'pipeline'), '--n', '2', '--steps', '2',
                        '--val-samples', '4', '--recogniser-dir', str(tmp_path / 'rec'), '--out', str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    for k in ('single_accuracy', 'single_heldout_accuracy', 'scene_score', 'scene_heldout_score', 'frechet_distance', 'val_loss'):
        assert k in m and 0 <= m[k] < float('inf'), (k, m)
    assert 'frechet_distance' in r.stdout and 'val_loss' in r.stdout
    # the recogniser was trained once for the 8 glyphs and cached; it reports its own accuracy, far above chance
    assert len(list((tmp_path / 'rec').glob('recogniser_*.safetensors'))) == 1
    assert m['recogniser']['crop_accuracy'] > 5 * m['recogniser']['chance'], m['recogniser']


def test_eval_cli_bad_inputs_are_one_line(tmp_path):
    "An unknown prompt set and a missing pipeline folder: one line on stderr, exit 2, no traceback."
    for args, msg in [(['--pipeline', str(tmp_path), '--sets', 'single,foo'], "config error: --sets: unknown prompt sets ['foo']"),
                      (['--pipeline', str(tmp_path / 'nope')], 'error: pipeline folder'),
                      (['--pipeline', str(tmp_path)], 'is not a pipeline folder: missing model/config.json')]:
        r = subprocess.run([sys.executable, '-m', 'flite_nb.evaluation', *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.strip().count('\n') == 0, (args, r.stderr)
