"""Per chapter: code cells, median and longest code cell (lines), and whether a figure is saved in its outputs.
Fails when a chapter has no saved figure or a code cell outside `#| slow` experiments has more than 60 lines."""
import json, re, statistics, sys
from pathlib import Path

MAX_LINES = 60
root = Path(__file__).resolve().parent.parent / 'nbs'
rows, bad, skipped = [], [], {'slow': 0, 'cuda': 0}
for f in sorted(root.glob('[0-9][0-9]_*.ipynb')):
    cells = [c for c in json.loads(f.read_text())['cells'] if c['cell_type'] == 'code']
    n = [len(''.join(c['source']).splitlines()) for c in cells]
    slow = [bool(re.search(r'#\|\s*slow', ''.join(c['source']))) for c in cells]
    for k in skipped: skipped[k] += sum(bool(re.search(rf'#\|\s*{k}', ''.join(c['source']))) for c in cells)
    fig = any('image/png' in o.get('data', {}) or 'image/svg+xml' in o.get('data', {}) for c in cells for o in c.get('outputs', []))
    bars = sum(bool(re.search(r'\d+%\||it/s\]|Loading weights', ''.join(o.get('text', ''))))
               for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'stream')
    if bars: bad.append(f"{f.name}: {bars} saved output(s) with progress bars")
    longest = max((k for k, s in zip(n, slow) if not s), default=0)
    rows.append((f.stem, len(cells), statistics.median(n) if n else 0, longest, max(n, default=0), fig))
    if not fig: bad.append(f"{f.name}: no saved figure")
    if longest > MAX_LINES: bad.append(f"{f.name}: a code cell of {longest} lines (limit {MAX_LINES} outside #| slow cells)")
print(f"{'chapter':<26} {'cells':>5} {'median':>6} {'max':>4} {'max+slow':>8} figure")
for r in rows: print(f"{r[0]:<26} {r[1]:>5} {r[2]:>6.1f} {r[3]:>4} {r[4]:>8} {'yes' if r[5] else 'NO'}")
n_all = len(list(root.glob('*.ipynb')))
print(f"\n{n_all} notebooks ({len(rows)} numbered chapters); nbdev_test skips {skipped['slow']} cells flagged slow and "
      f"{skipped['cuda']} flagged cuda (run them with nbdev_test --flags 'slow cuda')")
if bad: print('\n'.join(['', 'FAILED:'] + bad)); sys.exit(1)
