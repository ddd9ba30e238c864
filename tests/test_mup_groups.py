"μP parameter classification, AdamW groups and init for a two-width pair (MLP and the DiT)."
import pytest, torch
from torch import nn
from flite_nb.mup import classify_params, mup_param_groups, mup_init_, get_shapes
from flite_nb.model import FLiteDiT, preset


def mlp(w): return nn.Sequential(nn.Linear(10, w), nn.ReLU(), nn.Linear(w, w), nn.LayerNorm(w), nn.ReLU(), nn.Linear(w, 3))


def groups_by_name(groups): return {n: g for g in groups for n in g['names']}


def test_mlp_groups_two_widths():
    with torch.device('meta'): base = mlp(32)
    g = groups_by_name(mup_param_groups(mlp(128), base, lr=2e-3, weight_decay=0.05))
    assert g['2.weight']['kind'] == 'hidden' and g['2.weight']['lr'] == pytest.approx(2e-3 / 4)
    assert g['2.weight']['weight_decay'] == pytest.approx(0.2)
    assert g['5.weight']['kind'] == 'output' and g['5.weight']['lr'] == pytest.approx(2e-3 / 4)
    assert g['0.weight']['kind'] == 'input' and g['0.weight']['lr'] == pytest.approx(2e-3)
    for n in ('0.bias', '2.bias', '3.weight', '3.bias', '5.bias'):
        assert g[n]['kind'] == 'vector' and g[n]['lr'] == pytest.approx(2e-3) and g[n]['weight_decay'] == 0
    v = groups_by_name(mup_param_groups(mlp(128), base, lr=2e-3, weight_decay=0.05, decay_vectors=True))
    assert v['3.weight']['weight_decay'] == pytest.approx(0.05)


def test_shapes_dict_and_delta():
    base_shapes = get_shapes(mlp(32))
    a = classify_params(mlp(128), base_shapes)
    # with a delta model, infinite dims come from base vs delta and width_mult from model vs base
    b = classify_params(mlp(32), mlp(32), delta=mlp(64))
    assert a['2.weight'].kind == b['2.weight'].kind == 'hidden'
    assert b['2.weight'].width_mult == 1.0 and a['2.weight'].width_mult == 4.0


def test_sp_is_one_lr():
    groups = mup_param_groups(mlp(128), mlp(32), lr=1e-3, weight_decay=0.1, parametrization='sp')
    assert {g['lr'] for g in groups} == {1e-3}
    assert {g['weight_decay'] for g in groups} == {0.0, 0.1}


def test_bad_inputs():
    with pytest.raises(ValueError, match="parametrization must be 'mup' or 'sp'"): mup_param_groups(mlp(64), mlp(32), lr=1e-3, parametrization='x')
    with pytest.raises(ValueError, match='weight_decay must be >= 0'): mup_param_groups(mlp(64), mlp(32), lr=1e-3, weight_decay=-1)
    with pytest.raises(ValueError, match='different parameters'): classify_params(mlp(64), nn.Linear(2, 2))
    with pytest.raises(TypeError, match='base must be an nn.Module or a dict'): classify_params(mlp(64), 32)


def test_dit_groups_and_init():
    def dit(d): return FLiteDiT(preset('tiny', dim=d, heads=d // 64, depth=2))
    with torch.device('meta'): base_meta = dit(128)
    model = dit(256)
    info = classify_params(model, base_meta)
    assert info['final_proj.weight'].kind == 'output' and info['final_proj.bias'].kind == 'vector'
    assert info['patch_embed.patch_proj.weight'].kind == 'input'
    assert info['blocks.1.mlp.0.weight'].kind == 'hidden' and info['blocks.1.mlp.0.weight'].width_mult == 2.0
    assert info['register_tokens'].kind == 'vector'
    groups = mup_param_groups(model, base_meta, lr=1e-3, weight_decay=0.01)
    assert sum(len(g['params']) for g in groups) == len(list(model.parameters()))
    opt = torch.optim.AdamW(groups)  # groups carry their own lr
    torch.manual_seed(0); base = dit(128)
    before = model.blocks[0].cross_attn.context_kv.weight.std().item()
    mup_init_(model, base)
    # text projection (fan-in 384 fixed) gets the base's std, not Xavier's smaller one at width 256
    assert model.blocks[0].cross_attn.context_kv.weight.std().item() == pytest.approx(base.blocks[0].cross_attn.context_kv.weight.std().item(), rel=1e-4)
    assert model.blocks[0].cross_attn.context_kv.weight.std().item() > before
    assert model.final_proj.weight.abs().sum() == 0 and model.blocks[0].mod.adaLN_modulation[1].weight.abs().sum() == 0
