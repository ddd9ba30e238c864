"Stratified timesteps across a real 2-process gloo job: each rank's draws are its own strata of the global batch."
import subprocess, sys, textwrap

SCRIPT = textwrap.dedent('''
    import scipy.stats, torch, torch.distributed as dist
    from flite_nb.timesteps import TimestepConfig, sample_timesteps
    dist.init_process_group('gloo')
    rank, world, n = dist.get_rank(), dist.get_world_size(), 8
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)            # the same seed on every rank, as seed_everything would do
    for layout in ('interleaved', 'contiguous'):
        for sampler in ('uniform', 'beta'):
            cfg = TimestepConfig(sampler=sampler, stratified=True, layout=layout, shift='none', uniform_mix=0.)
            t = sample_timesteps(cfg, n, generator=g)   # rank and world come from torch.distributed
            got = [torch.zeros(n) for _ in range(world)]
            dist.all_gather(got, t)
            u = torch.cat(got).double()
            if sampler == 'beta': u = torch.from_numpy(scipy.stats.beta(cfg.beta_a, cfg.beta_b).cdf(u.numpy()))
            strata = (u * n * world).floor().long()
            assert sorted(strata.tolist()) == list(range(n * world)), (layout, sampler, strata.tolist())
            mine = set((u[rank * n:(rank + 1) * n] * n * world).floor().long().tolist())
            expect = set(range(rank * n, rank * n + n)) if layout == 'contiguous' else set(range(rank, n * world, world))
            assert mine == expect, (layout, mine, expect)
    dist.barrier()
    if rank == 0: print('STRATA OK', world)
    dist.destroy_process_group()
''')


def test_stratified_timesteps_across_ranks(tmp_path):
    script = tmp_path / 'strata.py'
    script.write_text(SCRIPT)
    # --standalone: a local rendezvous on a free port chosen by torchrun, so parallel test runs do not collide
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'STRATA OK 2' in r.stdout
