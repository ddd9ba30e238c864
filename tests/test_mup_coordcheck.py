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


def _trainer_coord_check(mup: bool, widths=(64, 128, 256, 512), steps=4, lr=3e-2):
    "The coordinate check through the trainer's own model construction (`build_model`) and optimiser (`make_optimizer`)."
    from dataclasses import replace
    from flite_nb.recipes import recipe
    from flite_nb.training import build_model
    from flite_nb.optim import make_optimizer, set_lr
    g = torch.Generator().manual_seed(0)
    x, eps = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1, torch.randn(8, 3, 16, 16, generator=g)
    ctx, msk = torch.randn(8, 6, 384, generator=g), torch.ones(8, 6, dtype=torch.bool)
    t = torch.rand(8, generator=g)
    recs = []
    for w in widths:
        c = recipe('micro')
        c = replace(c, model=replace(c.model, dim=w, heads=w // 32, text_dim=384), optim=replace(c.optim, mup=mup, base_width=64))
        model = build_model(c); opt = make_optimizer(model, c.optim); set_lr(opt, lr)
        names = ['blocks.0', 'blocks.1', 'final_proj']
        mods, acts = dict(model.named_modules()), {}
        hs = [mods[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, (o[0] if isinstance(o, tuple) else o).detach().abs().mean().item()))
              for n in names]
        for s in range(steps):
            xt = (1 - t)[:, None, None, None] * x + t[:, None, None, None] * eps
            loss = (model(xt, t, ctx, msk) - (eps - x)).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step()
            recs += [dict(width=w, step=s, module=n, l1=acts[n], parametrization='mup' if mup else 'sp') for n in names]
        for h in hs: h.remove()
    return coord_slopes(recs)


def test_trainer_model_is_mup():
    "With optim.mup the trainer's model and optimiser keep activations flat across an 8x width range; without, they grow."
    mup, sp = _trainer_coord_check(True), _trainer_coord_check(False)
    assert all(abs(v) < 0.2 for v in mup.values()), mup
    assert max(sp.values()) > 0.3, sp
