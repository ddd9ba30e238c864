"Multi-worker, multi-rank data loading: every sample is seen exactly once; tar shards round trip and resume."
import io, json
from collections import Counter

import pytest
import torch
from PIL import Image

from flite_nb.data import (OpenMojiScenes, TarStream, LoaderStats, make_loader, write_shards, BucketBatchSampler,
                           ImageCaptionDataset, render_scene, Scene)


def _keys(loader):
    return [k for b in loader for k in b['key']]


@pytest.mark.parametrize('world', [1, 2])
def test_map_style_two_workers_split_by_rank(world):
    ds = OpenMojiScenes(length=48, size=(32, 32), buckets=[(32, 32), (32, 48)])
    seen = []
    for rank in range(world):  # simulate the ranks of a torchrun job
        dl = make_loader(ds, 4, rank=rank, world_size=world, num_workers=2, drop_last=False)
        seen += _keys(dl)
    assert sorted(seen) == sorted(f'openmoji/train/0/{i}' for i in range(48))


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp('shards')
    src = OpenMojiScenes(length=24, size=(32, 32))
    urls = write_shards((src[i] for i in range(24)), f'{d}/s-%06d.tar', maxcount=5)
    return src, urls


def test_tar_round_trip(shards):
    src, urls = shards
    assert len(urls) == 5
    got = list(TarStream(urls, size=(32, 32)))
    assert [g['caption'] for g in got] == [src[i]['caption'] for i in range(24)]
    assert all(torch.equal(g['image'], src[i]['image']) for i, g in enumerate(got))  # PNG is lossless
    assert [g['scene'] for g in got] == [src[i]['scene'] for i in range(24)]


@pytest.mark.parametrize('world', [1, 2])
def test_tar_stream_two_workers_exactly_once_and_resume(shards, world):
    src, urls = shards
    caps = [src[i]['caption'] for i in range(24)]
    pos = []
    for rank in range(world):
        dl = make_loader(TarStream(urls, size=(32, 32), rank=rank, world_size=world), 3, num_workers=2, drop_last=False)
        for b in dl:
            pos += b['position']
            assert [caps[p] for p in b['position']] == b['caption']
    assert sorted(pos) == list(range(24))
    # resume from global position 10: exactly the remaining samples, once each
    pos = []
    for rank in range(world):
        dl = make_loader(TarStream(urls, size=(32, 32), rank=rank, world_size=world, start=10), 3, num_workers=2, drop_last=False)
        pos += [p for b in dl for p in b['position']]
    assert sorted(pos) == list(range(10, 24))


def test_tar_shard_split_covers_all(shards):
    src, urls = shards
    keys = []
    for rank in range(2):
        dl = make_loader(TarStream(urls, size=(32, 32), rank=rank, world_size=2, split='shard'), 4, num_workers=1, drop_last=False)
        keys += _keys(dl)
    assert len(keys) == 24 and len(set(keys)) == 24


def test_bad_tar_sample_is_skipped_and_counted(tmp_path):
    import webdataset as wds
    with wds.TarWriter(str(tmp_path/'bad.tar')) as w:
        img = render_scene(Scene('white', [(0x1F34E, 'center')]), 32, 32)
        import io
        buf = io.BytesIO(); img.save(buf, format='PNG')
        w.write({'__key__': 'a', 'png': buf.getvalue(), 'txt': b'a red apple'})
        w.write({'__key__': 'b', 'png': b'<html>not a png</html>', 'txt': b'broken'})
        w.write({'__key__': 'c', 'png': buf.getvalue(), 'txt': b''})
    stats = LoaderStats()
    dl = make_loader(TarStream([str(tmp_path/'bad.tar')], size=(32, 32)), 3, drop_last=False)
    batches = [stats.update_from(b) for b in dl]
    assert sum(len(b['caption']) for b in batches) == 2
    assert stats['bad_image'] == 1 and stats['empty_caption'] == 1


def test_folder_loader_with_workers_reports_issues(tmp_path):
    for i in range(6):
        Image.new('RGB', (40, 30), (i * 40, 0, 0)).save(tmp_path/f'{i}.png'); (tmp_path/f'{i}.txt').write_text(f'image {i}')
    Image.new('LA', (40, 30)).save(tmp_path/'6.png')  # alpha, no caption
    (tmp_path/'7.png').write_bytes(b'GIF89a-truncated'); (tmp_path/'7.txt').write_text('bad')  # no valid header: skipped at start
    buf = io.BytesIO(); Image.new('RGB', (40, 30), (9, 9, 9)).save(buf, 'PNG')
    (tmp_path/'8.png').write_bytes(buf.getvalue()[:60]); (tmp_path/'8.txt').write_text('cut')   # header fine, data cut: found when loaded
    ds = ImageCaptionDataset(path=str(tmp_path), size=(32, 32))
    assert len(ds) == 8 and ds.bad == {str(tmp_path/'7.png'): 'unreadable'}
    stats = LoaderStats()
    for b in make_loader(ds, 4, num_workers=2, drop_last=False): stats.update_from(b)
    assert stats['samples'] == 8 and stats['replaced'] == 1 and stats['alpha'] == 1 and stats['empty_caption'] == 1, stats
