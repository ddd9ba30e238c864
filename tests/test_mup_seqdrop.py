"μP groups and sequence dropout together on the DiT: a training step at r = 0.5, and the schedule from a config dict."
import pytest, torch
from flite_nb.core import config_from_dict, ConfigError
from flite_nb.model import FLiteDiT, preset
from flite_nb.mup import mup_param_groups
from flite_nb.seqdrop import seqdrop_loss, sample_keep, SeqDropSchedule, keep_count


def test_train_step_with_mup_and_dropout():
    def dit(d): return FLiteDiT(preset('tiny', dim=d, heads=d // 32, depth=2, n_registers=4, text_dim=16))
    with torch.device('meta'): base = dit(64)
    model = dit(128)
    opt = torch.optim.AdamW(mup_param_groups(model, base, lr=1e-3, weight_decay=0.01))
    g = torch.Generator().manual_seed(0)
    x, eps = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 3, 16, 16)
    loss = seqdrop_loss(model, x, eps, torch.rand(2), torch.randn(2, 3, 16), rate=0.5, generator=g)
    loss.backward(); opt.step()
    assert torch.isfinite(loss) and model.final_proj.weight.abs().sum() > 0


def test_keep_per_sample_and_count():
    idx = sample_keep(16, 100, 0.3, torch.Generator().manual_seed(0))
    assert idx.shape == (16, keep_count(100, 0.3)) == (16, 70)
    assert len({tuple(r.tolist()) for r in idx}) == 16


def test_schedule_config():
    s = config_from_dict(SeqDropSchedule, {'phases': [[100, 0.75], [200, 0.5]]})
    assert [s.rate_at(i) for i in (0, 150, 200)] == [0.75, 0.5, 0.0]
    with pytest.raises(ConfigError, match='strictly increasing'): SeqDropSchedule([(100, 0.5), (100, 0.25)])
