"""The by-task table of the composition experiments (issue 17) from the files the runs wrote: one row per folder of
nbs/logs/composition/ holding run.json (bench/summarise_run.py), eval.json (python -m flite_nb.evaluation) and
overrides.txt (the command-line overrides of `python -m flite_nb.train`), in the order of their names.

    python bench/composition_table.py nbs/logs/composition
"""
import json, sys
from pathlib import Path

TASKS = ('single_center', 'single_position', 'two_glyphs', 'two_positions', 'background')

def row(d: Path) -> str:
    r, e = json.loads((d / 'run.json').read_text()), json.loads((d / 'eval.json').read_text())
    t = {(x['task'], x['split']): (x['accuracy'], x['n']) for x in e['tasks']}
    cell = lambda k: ' / '.join(f"{t[(k, s)][0]:.2f} ({t[(k, s)][1]})" if (k, s) in t and t[(k, s)][1] else '-' for s in ('seen', 'held-out'))
    ov = (d / 'overrides.txt').read_text().strip() if (d / 'overrides.txt').exists() else ''
    wall = f"{r['wall_s'] / 60:.1f} min ({r.get('threads', '?')} thr{', shared CPU' if r.get('shared') else ''})"
    return (f"| {d.name} | `{ov or 'none'}` | {r.get('steps')} | {wall} | {r['val_loss']:.4f} ({r['val_ema_loss']:.4f}) | "
            + ' | '.join(cell(k) for k in TASKS) + ' |')

def table(root: Path) -> str:
    head = ('| run | overrides | steps | wall | val loss (EMA) | ' + ' | '.join(f'{k} seen / held-out' for k in TASKS) + ' |\n'
            + '|---' * (5 + len(TASKS)) + '|')
    return '\n'.join([head] + [row(d) for d in sorted(p for p in root.iterdir() if (p / 'eval.json').exists())])

if __name__ == '__main__': print(table(Path(sys.argv[1] if len(sys.argv) > 1 else 'nbs/logs/composition')))
