"Model API checks that complement the notebook tests (nbs/21_attention, nbs/23_model): file loading, autocast, checkpointing."
import copy
from dataclasses import replace

import pytest
import torch

from flite_nb.model import (DiTConfig, FLiteDiT, PRESETS, preset, perturb_zero_init, load_flite_checkpoint,
                            convert_flite_state_dict, flite_config_from_state_dict, model_flops, pack_images)
from flite_nb.core import ConfigError, count_params

torch.set_num_threads(1)
TINY = DiTConfig(dim=64, depth=2, heads=2, text_dim=24, n_registers=4)


def _inputs(B=2, H=8, W=12, S=5, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(B, S, 24, generator=g)
    mask = torch.ones(B, S, dtype=torch.bool); mask[0, 3:] = False
    return torch.randn(B, C, H, W, generator=g), torch.rand(B, generator=g), ctx, mask


def test_presets_build_on_meta_and_10b_count():
    with torch.device('meta'):
        n = count_params(FLiteDiT(preset('flite-10b')))
    assert 9.7e9 < n < 9.9e9
    assert set(PRESETS) >= {'tiny', 'small', 'base', 'flite-10b'}
    with pytest.raises(ConfigError, match='unknown preset'): preset('huge')
    with pytest.raises(ConfigError, match='override'): preset('tiny', widht=3)


@pytest.mark.parametrize('kw', [dict(), dict(block='mmdit'), dict(adaln='lora', adaln_lora_rank=4, mlp='swiglu')])
def test_grad_checkpoint_matches(kw):
    m = perturb_zero_init(FLiteDiT(replace(TINY, **kw)))
    mc = copy.deepcopy(m); mc.cfg = replace(mc.cfg, grad_checkpoint=True)
    x, t, c, cm = _inputs()
    for mod in (m, mc): mod.train(); mod(x, t, c, cm).pow(2).mean().backward()
    for (n, a), (_, b) in zip(m.named_parameters(), mc.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast_close_to_fp32():
    m = perturb_zero_init(FLiteDiT(TINY), std=0.05)
    x, t, c, cm = _inputs()
    with torch.no_grad():
        y = m(x, t, c, cm)
        with torch.autocast('cpu', dtype=torch.bfloat16): yb = m(x, t, c, cm)
    assert yb.shape == y.shape
    assert (yb.float() - y).abs().max() < 0.05 * y.abs().max() + 1e-3


def test_mmdit_text_padding_invariance():
    m = perturb_zero_init(FLiteDiT(replace(TINY, block='mmdit')))
    x, t, c, cm = _inputs()
    c2 = torch.where(cm[..., None], c, 10 * torch.randn_like(c))
    with torch.no_grad(): torch.testing.assert_close(m(x, t, c2, cm), m(x, t, c, cm), rtol=1e-5, atol=1e-5)


def test_load_released_layout_from_safetensors_file(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    ref = perturb_zero_init(FLiteDiT(replace(TINY, in_channels=4, text_mask=False, heads=1, dim=64)))
    # write our model back in the released layout (inverse of the converter) and load it from disk
    sd = {}
    for k, v in ref.state_dict().items():
        k = k.replace('.mod.adaLN_modulation.', '.adaLN_modulation.').replace('self_attn.value_mix.lambda_param', 'self_attn.lambda_param')
        sd[k] = -v if k.startswith('final_proj.') else v.clone()
    sd['blocks.0.self_attn.lambda_param'] = torch.tensor([0.5])
    sd['rope.freqs_hw_cos'] = torch.zeros(4, 4, 32)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / 'diffusion_pytorch_model.safetensors'))
    m = load_flite_checkpoint(tmp_path, heads=1)
    x, t, c, cm = _inputs(C=4)
    with torch.no_grad(): torch.testing.assert_close(m(x, t, c), ref(x, t, c), rtol=0, atol=0)
    assert m.cfg.text_mask is False and m.cfg.norm == 'none'


def test_flops_scale_with_tokens():
    cfg = preset('tiny')
    f32, f64 = model_flops(cfg, 32, 32, 77), model_flops(cfg, 64, 64, 77)
    assert f64['self_attn'] / f32['self_attn'] == pytest.approx(((1024 + 16) / (256 + 16)) ** 2)
    assert model_flops(cfg, 32, 32, 77, n_tokens=128)['blocks'] < f32['blocks']
    with pytest.raises(ValueError, match='divisible'): model_flops(cfg, 33, 32, 77)


def test_packed_batch_with_token_keep_runs():
    m = perturb_zero_init(FLiteDiT(TINY))
    tk, hw = pack_images([torch.randn(3, 8, 8), torch.randn(3, 4, 8)], 2)
    keep = torch.stack([torch.randperm(8) for _ in range(2)])      # within sample 1's 8 real tokens
    with torch.no_grad(): out = m(tk, torch.rand(2), torch.randn(2, 5, 24), hw=hw, token_keep=keep)
    assert out.shape == (2, 8, 12)


def test_null_context_does_not_depend_on_the_batch_length():
    "The zero null context marks one position real: MM-DiT's unconditional output no longer changes with the padding length"
    " (it did by ~2e-2), and cross-attention's output is the same as with every null position real."
    from dataclasses import replace as _replace
    from flite_nb.model import FLiteDiT, preset, perturb_zero_init
    from flite_nb.text import TextEncoder, TextEncoderConfig
    enc = TextEncoder(TextEncoderConfig(name='minilm', layer=1, max_length=16))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 3, 8, 8, generator=g), torch.full((1,), 0.5)
    for block in ('mmdit', 'cross'):
        torch.manual_seed(0)
        m = perturb_zero_init(FLiteDiT(preset('tiny', dim=64, depth=2, heads=2, text_dim=enc.width, block=block)), std=0.05).eval()
        with torch.no_grad():
            outs = [m(x, t, **{k: v for k, v in zip(('context', 'context_mask'), enc.null(1, S).values())}) for S in (1, 5, 12)]
            assert all(torch.allclose(o, outs[0], atol=1e-6) for o in outs), block
            if block == 'cross':
                n = enc.null(1, 12)
                every = m(x, t, n['context'], torch.ones_like(n['context_mask']))
                assert torch.allclose(every, outs[2], atol=1e-6)
