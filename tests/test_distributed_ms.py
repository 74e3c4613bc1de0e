"""In a 2-process gloo run the MS loss sees the global batch: same value as one
process on the concatenated batch, and gradients that DDP's averaging turns into
the single-process gradient."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmf_refnet.losses import MultiSimilarity

SIZES = (5, 3)  # uneven on purpose: the last batch of an epoch often is


def _data():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(sum(SIZES), 6, generator=generator)
    labels = torch.randint(0, 3, (sum(SIZES),), generator=generator)
    return embeddings, labels


def _worker(rank, port, results):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        embeddings, labels = _data()
        start = sum(SIZES[:rank])
        local = embeddings[start:start + SIZES[rank]].clone().requires_grad_(True)
        loss = MultiSimilarity(miner_epsilon=0.1)(local, labels[start:start + SIZES[rank]])
        loss.backward()
        results[rank] = (loss.item(), local.grad.clone())
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ms_loss_equals_the_concatenated_batch():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    embeddings, labels = _data()
    full = embeddings.clone().requires_grad_(True)
    expected = MultiSimilarity(miner_epsilon=0.1)(full, labels)
    expected.backward()
    assert results[0][0] == pytest.approx(expected.item(), abs=1e-5)
    assert results[1][0] == pytest.approx(expected.item(), abs=1e-5)
    # each rank holds world_size x its rows' gradient; DDP then averages over ranks
    torch.testing.assert_close(results[0][1] / 2, full.grad[: SIZES[0]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(results[1][1] / 2, full.grad[SIZES[0]:], atol=1e-6, rtol=1e-5)
