"The memory plan's command lines: `python -m flite_nb.plan` and `python -m flite_nb.train --dry-run` (nothing loads, nothing trains)."
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ('256px', '512px-buckets', '1024px-buckets', '1024px-unmasked')


def run(*args):
    r = subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout


def totals(out):
    "GiB per GPU of each stage, from the table's bold total."
    return {s: float(re.search(rf"^\| {re.escape(s)} \|.*\*\*([\d.]+)\*\*", out, re.M).group(1)) for s in STAGES}


def test_plan_and_dry_run():
    plan64 = run('flite_nb.plan', '--preset', 'flite-10b', '--gpus', '64', '--gpu-gib', '80')
    dry = run('flite_nb.train', '--preset', 'flite-10b', '--dry-run', '--world', '64')
    for out in (plan64, dry):
        for s in STAGES: assert f"stage {s!r}: fits" in out or f"stage {s!r}: does not fit" in out, (s, out[-3000:])
    assert 'recipe flite-10b' in dry and totals(dry) == totals(plan64)   # the dry run prints the same plan
    plan32 = run('flite_nb.plan', '--preset', 'flite-10b', '--gpus', '32', '--gpu-gib', '80')
    assert all(totals(plan64)[s] < totals(plan32)[s] for s in STAGES)     # FSDP: more GPUs, fewer bytes per GPU
    off = run('flite_nb.plan', '--preset', 'flite-10b', '--gpus', '64', 'model.grad_checkpoint=false')
    assert all(totals(off)[s] > totals(plan64)[s] for s in STAGES)        # checkpointing lowers the activations
    assert all(f"stage {s!r}: does not fit" in off for s in STAGES)


def test_dry_run_config_error_is_one_line():
    r = subprocess.run([sys.executable, '-m', 'flite_nb.train', '--preset', 'flite-10b', '--dry-run', '--world', '48'],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'does not split' in r.stderr, (r.stdout[-500:], r.stderr)
