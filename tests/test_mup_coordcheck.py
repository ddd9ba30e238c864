"Coordinate check: μP keeps activations flat in width, SP does not (a tiny MLP, a few seconds)."
import torch
from torch import nn
from flite_nb.mup import coord_check, coord_slopes


class MLP(nn.Module):
    def __init__(self, w):
        super().__init__(); self.inp, self.h1, self.h2, self.out = nn.Linear(16, w), nn.Linear(w, w), nn.Linear(w, w), nn.Linear(w, 8)
    def forward(self, x): return self.out(torch.relu(self.h2(torch.relu(self.h1(torch.relu(self.inp(x)))))))


def test_slopes():
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(64, 16, generator=g), torch.randn(64, 8, generator=g))
    loss = lambda m, b: (m(b[0]) - b[1]).pow(2).mean()
    s = {p: coord_slopes(coord_check(MLP, [64, 128, 256, 512], batch, loss, base_width=64, lr=3e-3, steps=5, parametrization=p))
         for p in ('mup', 'sp')}
    assert all(abs(v) < 0.2 for v in s['mup'].values()), s
    assert s['sp']['out'] > 0.4 and s['sp']['h2'] > 0.25, s


def test_records_every_step_and_module():
    batch = (torch.randn(4, 16), torch.randn(4, 8))
    recs = coord_check(MLP, [32, 64], batch, lambda m, b: m(b[0]).pow(2).mean(), base_width=32, steps=2, modules=['h1', 'out'])
    assert len(recs) == 2 * 2 * 2 and {r['module'] for r in recs} == {'h1', 'out'}
