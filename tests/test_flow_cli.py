"The main job `python -m flite_nb.flow` trains the 2D toy, writes its files, and beats an untrained model."
import json, subprocess, sys
from pathlib import Path


def test_flow_cli_trains_and_writes(tmp_path):
    out = tmp_path / 'toy'
    r = subprocess.run([sys.executable, '-m', 'flite_nb.flow', '--out', str(out), '--steps', '300', '--seed', '1'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'energy distance' in r.stdout and 'metrics.json' in r.stdout
    assert (out / 'samples.png').stat().st_size > 1000
    m = json.loads((out / 'metrics.json').read_text())
    assert m['steps'] == 300 and m['seed'] == 1
    ed, eu = m['energy_distance'], m['energy_distance_untrained']
    assert set(ed) == {'euler_1', 'euler_4', 'euler_16', 'heun_4', 'heun_8'}
    # the untrained model outputs ~0 velocity: its samples are the noise itself
    assert ed['euler_16'] < eu['euler_16'] / 2, (ed, eu)
    assert ed['heun_8'] < eu['heun_8'] / 2, (ed, eu)
    assert m['near_data_euler_16'] > m['near_data_euler_16_untrained'] + 0.1, m


def test_flow_cli_rejects_bad_args(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'flite_nb.flow', '--out', str(tmp_path), '--data', 'spiral'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'invalid choice' in r.stderr
