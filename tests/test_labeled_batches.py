"""Labeled-aware training batches (dataset_config.<name>.labeled_per_batch, data/labeled_batches.py)."""

import random

import pytest

from mmf_refnet.data.labeled_batches import LabeledBatchSampler, labeled_rows_per_batch


def _flags(rows: int, labeled: int, seed: int = 0):
    chosen = set(random.Random(seed).sample(range(rows), labeled))
    return [index in chosen for index in range(rows)]


def _epoch(flags, global_batch, count, ranks, epoch, seed=3):
    """[[rank 0's batch, rank 1's batch, ...] for every batch of ``epoch``]."""
    samplers = [LabeledBatchSampler(flags, global_batch // ranks, count, seed, ranks, rank) for rank in range(ranks)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    lengths = {len(sampler) for sampler in samplers}
    assert len(lengths) == 1, "every rank must run the same number of batches"
    return [list(batches) for batches in zip(*samplers)]


@pytest.mark.parametrize("global_batch,ranks,setting", [(32, 1, 8), (32, 2, 8), (32, 4, 5), (30, 3, 0.25), (48, 2, 1),
                                                        (16, 1, 16)])
def test_every_training_batch_carries_the_configured_labeled_rows(global_batch, ranks, setting):
    flags = _flags(500, 25)  # 5 % labeled: 25 rows, not a multiple of the count (passes straddle batches)
    count = labeled_rows_per_batch(setting, global_batch)
    assert count == (round(setting * global_batch) if isinstance(setting, float) else setting)
    labeled_pool = {index for index, flag in enumerate(flags) if flag}
    shares = [count // ranks + (rank < count % ranks) for rank in range(ranks)]
    for epoch in (0, 1, 2):
        seen = set()
        batches = _epoch(flags, global_batch, count, ranks, epoch)
        for per_rank in batches:
            for rank, batch in enumerate(per_rank):
                assert sum(flags[index] for index in batch) == shares[rank]
                if count < global_batch:  # 475 unlabeled rows fill every batch
                    assert len(batch) == global_batch // ranks
            rows = [index for batch in per_rank for index in batch]
            assert len(rows) == len(set(rows)), "a row twice in one global batch"
            assert sum(flags[index] for index in rows) == count
            seen.update(rows)
        assert labeled_pool <= seen
        if count < global_batch:
            assert seen == set(range(500)), "every row once an epoch at least"


def test_batches_depend_on_seed_and_epoch_only_and_not_on_the_number_of_processes():
    flags = _flags(300, 30)
    one = _epoch(flags, 32, 8, 1, epoch=4)
    assert one == _epoch(flags, 32, 8, 1, epoch=4)  # a fresh sampler: the same batches
    assert one != _epoch(flags, 32, 8, 1, epoch=5)
    assert one != _epoch(flags, 32, 8, 1, epoch=4, seed=4)
    for ranks in (2, 4):
        split = _epoch(flags, 32, 8, ranks, epoch=4)
        assert [sorted(i for batch in per_rank for i in batch) for per_rank in split] == [sorted(b[0]) for b in one]


def test_labeled_rows_cycle_through_the_whole_pool_in_order():
    """The labeled pool is reshuffled after each pass: within a pass no row comes back."""
    flags = _flags(400, 20)
    stream = [index for per_rank in _epoch(flags, 32, 8, 1, epoch=0) for index in per_rank[0] if flags[index]]
    assert len(stream) > 40
    for start in range(0, 40, 20):
        assert len(set(stream[start:start + 20])) == 20


def test_a_labeled_pool_smaller_than_the_count_fills_every_batch_with_all_of_it():
    flags = [index < 3 for index in range(100)]
    sampler = LabeledBatchSampler(flags, 32, 8, seed=0)
    for batch in sampler:
        assert sorted(index for index in batch if flags[index]) == [0, 1, 2] and len(batch) == 32


@pytest.mark.parametrize("setting,message", [
    (1.0, "a share must be in"), (0, "between 1 and the batch size"), (40, "training.batch_size=32"),
    (True, "got True"), ("some", "got 'some'"), (-0.5, "a share must be in"), ("0.25", "got '0.25'")])
def test_bad_settings_are_named(setting, message):
    with pytest.raises(ValueError, match=message) as error:
        labeled_rows_per_batch(setting, 32, key="dataset_config.hateful_memes.labeled_per_batch")
    assert "dataset_config.hateful_memes.labeled_per_batch" in str(error.value)


def test_null_means_random_mixing():
    assert labeled_rows_per_batch(None, 32) is None
    assert labeled_rows_per_batch("natural", 32) is None
    assert labeled_rows_per_batch("Natural", 32) is None


# --- through MMF's loaders (data.resumable's hook) ----------------------------

def _loaders(tmp_path, *opts):
    from mmf.common.registry import registry

    from mmf_refnet.data.resumable import ResumableDatasetLoader
    from tests import inprocess, replicas

    data = str(tmp_path / "data")
    replicas.hateful_memes(data, sizes=(64, 12, 10))
    config = inprocess.configuration(tmp_path, "refnet_ms", opts=[f"env.data_dir={data}", "training.batch_size=8",
                                                                   *opts])
    registry.register("config", config)
    loader = ResumableDatasetLoader(config)
    loader.load_datasets()
    return loader


def _rows(batches):
    return [(batch["id"].tolist(), batch["labeled"].tolist() if "labeled" in batch else None) for batch in batches]


def test_mmf_training_batches_carry_the_configured_labeled_rows_and_val_test_are_untouched(tmp_path):
    few = ["dataset_config.hateful_memes.label_fraction=0.25"]  # 16 of 64 training rows labeled
    loader = _loaders(tmp_path, *few, "dataset_config.hateful_memes.labeled_per_batch=3")
    natural = _loaders(tmp_path / "natural", *few, "dataset_config.hateful_memes.labeled_per_batch=None")
    for epoch in (0, 1):
        loader.seed_sampler("train", epoch)
        batches = _rows(loader.train_loader)
        flags = {i: flag for ids, labeled in batches for i, flag in zip(ids, labeled)}
        assert len(flags) == 64 and 14 <= sum(flags.values()) <= 18  # every row at least once an epoch
        assert len(batches) == -(-(64 - sum(flags.values())) // 5)  # the unlabeled rows, 5 a batch
        assert all(len(ids) == 8 and sum(labeled) == 3 for ids, labeled in batches)
        natural.seed_sampler("train", epoch)
        mixed = _rows(natural.train_loader)
        assert sorted(i for ids, _ in mixed for i in ids) == sorted(flags)  # every row once, 8 batches of 8
        assert len({sum(labeled) for _, labeled in mixed}) > 1  # random mixing: the count varies
    for split, sampler in (("val", "RandomSampler"), ("test", "SequentialSampler")):  # rc10's, as with all labels
        for loaders in (loader, natural):
            multi = getattr(loaders, f"{split}_loader")
            assert type(multi.loaders[0].batch_sampler.sampler).__name__ == sampler
            rows = _rows(multi)
            ids = [i for batch_ids, _ in rows for i in batch_ids]
            assert all(labeled is None for _, labeled in rows)  # no labeled flag: the losses see every row
            assert len(ids) == len(set(ids)) == {"val": 12, "test": 10}[split]
            if split == "test":
                assert ids == sorted(ids)
