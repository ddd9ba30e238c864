"""Summarise a finished training run for the front page: wall time (from `/usr/bin/time -v` output when given, else the
metrics' first and last timestamps), peak memory, final validation loss (weights and EMA), the time of the first third
of the logged steps (compilation included) and the seconds per step over the rest, written as JSON.

    /usr/bin/time -v python -m flite_nb.train --out runs/tiny seed=0 2> runs/tiny/time.log
    python bench/summarise_run.py runs/tiny --time-log runs/tiny/time.log --out nbs/images/default_run_seed0.json
"""
import argparse, json, re
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('run'); ap.add_argument('--time-log', default=None); ap.add_argument('--out', required=True)
a = ap.parse_args()
run = Path(a.run)
recs = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines() if l.strip()]
cfg = json.loads((run / 'config.json').read_text())
val = [r for r in recs if 'val/loss' in r][-1]
out = dict(run=str(run), recipe=cfg.get('recipe'), seed=cfg.get('seed'), steps=max(r['step'] for r in recs),
           val_loss=val['val/loss'], val_ema_loss=val.get('val_ema/loss'), wall_s=recs[-1]['time'] - recs[0]['time'], wall_from='metrics')
t_at = {r['step']: r['time'] for r in recs if 'train/loss' in r}      # when each logged step finished
if len(t_at) > 2:
    s0, s1 = min(t_at), max(t_at); mid = min(t_at, key=lambda s: abs(s - (s0 + s1) // 3))
    out.update(train_s=t_at[s1] - t_at[s0], first_steps=(s0, mid), first_steps_s=t_at[mid] - t_at[s0],   # the first third (compilation included)
               steady_s_per_step=(t_at[s1] - t_at[mid]) / (s1 - mid))                                 # the rest
if a.time_log:
    t = Path(a.time_log).read_text()
    m = re.search(r'Elapsed \(wall clock\) time .*?: (?:(\d+):)?(\d+):([\d.]+)', t)
    if m: out.update(wall_s=int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3]), wall_from='time -v (whole command)')
    m = re.search(r'Maximum resident set size \(kbytes\): (\d+)', t)
    if m: out['peak_rss_gib'] = int(m[1]) / 2 ** 20
    m = re.search(r'autocast \S+, (\d+) threads', t)   # the run's own start-up line (threads=0 probes the CPU)
    if m: out['threads'] = int(m[1])
Path(a.out).write_text(json.dumps(out, indent=1)); print(json.dumps(out))
