"""Dynamic text padding (mmf_refnet/data/text_padding.py): lengths, fields, exact results, dataset wiring."""

import copy
import os
import re

import pytest
import torch

from mmf_refnet.data import text_padding
from mmf_refnet.data.text_padding import TextPadding, padded_length, padding_mode
from tests import inprocess, replicas, runner

WIDTH = 32  # the batch's padded width (max_seq_length)
ROW_LENGTHS = [5, 13, 3, 9, 7, 11]  # real tokens per row, [CLS] and [SEP] included: longest 13 → 16


def test_longest_rounds_up_to_the_multiple_and_never_passes_the_width():
    assert padded_length(13, 128, "longest") == 16
    assert padded_length(16, 128, "longest") == 16
    assert padded_length(17, 128, "longest", multiple=8) == 24
    assert padded_length(5, 12, "longest") == 8
    assert padded_length(10, 12, "longest") == 12  # 16 would pass max_seq_length
    assert padded_length(0, 128, "longest") == 8  # an all-padding batch keeps one column's worth
    assert padded_length(13, 128, "longest", multiple=1) == 13
    assert padded_length(13, 128, "off") == 128


def test_buckets_take_the_smallest_that_fits_and_always_end_at_the_width():
    assert text_padding.default_buckets(128) == [16, 32, 64, 128]
    assert text_padding.default_buckets(256) == [16, 32, 64, 128, 256]
    assert text_padding.default_buckets(12) == [12]
    assert [padded_length(n, 128, "buckets") for n in (3, 16, 17, 40, 65, 128)] == [16, 16, 32, 64, 128, 128]
    assert [padded_length(n, 128, "buckets", buckets=[24, 48, 500]) for n in (3, 30, 49)] == [24, 48, 128]


def test_mode_auto_is_buckets_under_compile_and_yaml_off_is_off():
    assert padding_mode("auto", compile_setting=False) == "longest"
    assert padding_mode("auto", compile_setting="reduce-overhead") == "buckets"
    assert padding_mode(None) == "longest" and padding_mode(True) == "longest"
    assert padding_mode(False) == "off" and padding_mode("OFF") == "off"
    with pytest.raises(ValueError, match="training.text_padding must be one of"):
        padding_mode("dynamic")
    with pytest.raises(ValueError, match="text_padding_multiple"):
        TextPadding("longest", multiple=0)
    with pytest.raises(ValueError, match="text_padding_buckets"):
        TextPadding("buckets", buckets=[0, 16])


def test_from_config_reads_the_training_keys():
    from omegaconf import OmegaConf

    config = OmegaConf.create({"training": {"text_padding": "buckets", "text_padding_multiple": 4,
                                            "text_padding_buckets": [8, 24], "compile": False}})
    padding = TextPadding.from_config(config)
    assert (padding.mode, padding.multiple, padding.buckets) == ("buckets", 4, [8, 24])
    assert TextPadding.from_config(OmegaConf.create({"training": {"compile": True}})).mode == "buckets"
    assert TextPadding.from_config(None).mode == "longest"


def padded_batch(size: int = 6, seed: int = 0):
    """inprocess's HM-like batch with text padded to WIDTH the way rc10's bert_tokenizer pads it:
    ids/mask/segments 0 and lm labels -1 after each row's length; rows differ in length."""
    batch = inprocess.batch(size=size, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(size, WIDTH, dtype=torch.long)
    mask, segments = torch.zeros_like(ids), torch.zeros_like(ids)
    labels = torch.full_like(ids, -1)
    for row, length in enumerate(ROW_LENGTHS[:size]):
        ids[row, :length] = torch.randint(5, replicas.vocab_size(), (length,), generator=generator)
        mask[row, :length] = 1
        segments[row, length // 2:length] = 1  # a second segment, so token types matter
        labels[row, 1:length - 1] = ids[row, 1:length - 1]
    batch.input_ids, batch.input_mask, batch.segment_ids, batch.lm_label_ids = ids, mask, segments, labels
    batch.tokens = [["[CLS]"] * length for length in ROW_LENGTHS[:size]]
    return batch


def test_text_fields_are_cut_together_and_only_padding_goes():
    batch = padded_batch()
    original = copy.deepcopy(batch)
    trimmed = TextPadding("longest")(batch)
    for field in text_padding.TEXT_FIELDS:
        assert trimmed[field].shape == (6, 16), field
        assert torch.equal(trimmed[field], original[field][:, :16]), field
        assert trimmed[field].is_contiguous()
    # what was cut is padding in every field and every row
    assert original.input_mask[:, 16:].sum() == 0 and original.input_ids[:, 16:].abs().sum() == 0
    assert original.segment_ids[:, 16:].abs().sum() == 0 and (original.lm_label_ids[:, 16:] == -1).all()
    assert trimmed.input_mask.sum() == original.input_mask.sum() == sum(ROW_LENGTHS)
    assert trimmed.tokens == original.tokens and torch.equal(trimmed.image_feature_0, original.image_feature_0)
    assert TextPadding("buckets", buckets=[12, 24])(copy.deepcopy(original)).input_ids.size(1) == 24
    assert TextPadding("off")(copy.deepcopy(original)).input_ids.size(1) == WIDTH


def test_a_mask_that_hides_real_ids_is_refused_not_cut():
    batch = padded_batch()
    batch.input_ids[2, 20] = 7  # a token the mask calls padding
    with pytest.raises(ValueError, match=r"hateful_memes: input_mask marks columns 16.. .*training.text_padding=off"):
        TextPadding("longest", dataset_name="hateful_memes")(batch)


def _step(model, batch):
    model.zero_grad(set_to_none=True)
    output = model(batch)
    sum(loss.sum() for loss in output["losses"].values()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return output, grads


@pytest.mark.parametrize("model_name", ["vilbert", "refnet", "refnet_ms"])
def test_trimmed_batch_gives_the_same_scores_losses_and_gradients(tmp_path, model_name):
    """fp32, dropout 0 (the tiny test models), through ``model(sample_list)``: trimming changes nothing."""
    torch.manual_seed(0)
    model = inprocess.build(inprocess.configuration(tmp_path, model_name), model_name).train()
    padded = padded_batch()
    trimmed = TextPadding("longest")(copy.deepcopy(padded))
    assert trimmed.input_ids.size(1) == 16 < padded.input_ids.size(1)

    reference, reference_grads = _step(model, padded)
    again, _ = _step(model, copy.deepcopy(padded))
    assert torch.equal(again["scores"], reference["scores"])  # deterministic: no dropout, no randomness
    output, grads = _step(model, trimmed)

    assert torch.allclose(output["scores"], reference["scores"], rtol=0, atol=1e-5)
    assert set(output["losses"]) == set(reference["losses"]) and reference["losses"]
    for name, value in reference["losses"].items():
        assert torch.allclose(output["losses"][name], value, rtol=0, atol=1e-5), name
    assert set(grads) == set(reference_grads)
    assert any("embeddings.word_embeddings" in name for name in grads)
    for name, grad in reference_grads.items():
        assert torch.allclose(grads[name], grad, rtol=0, atol=1e-5), name

    # the comparison can fail: a batch whose padding is attended to gives other scores
    unmasked = copy.deepcopy(padded)
    unmasked.input_mask = torch.ones_like(unmasked.input_mask)
    assert not torch.allclose(_step(model, unmasked)[0]["scores"], reference["scores"], atol=1e-3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    replicas.hateful_memes(str(directory), sizes=(16, 8, 8))
    replicas.mmimdb(str(directory), sizes=(16, 8, 8))
    replicas.visual_entailment(str(directory), sizes=(15, 6, 6))
    return directory


def _dataset_batch(tmp_path, monkeypatch, data_dir, dataset: str, opts=()):
    """MMF builds the dataset from the tiny project config; MMF's collator and the dataset's prepare_batch run."""
    from mmf.common.batch_collator import BatchCollator
    from mmf.common.registry import registry
    from mmf.utils.build import build_dataset

    from tests import test_mmf_end_to_end

    features = getattr(test_mmf_end_to_end, "VE_NPY_FEATURES", {}) if dataset == "visual_entailment" else {}
    opts = [f"env.data_dir={data_dir}", *opts] + [f"dataset_config.{dataset}.features.{split}={paths}"
                                                  for split, paths in features.items()]
    if dataset == "mmimdb":  # the replica's genres + MMF's <unk> slot
        opts.append(f"model_config.refnet_ms.num_labels={len(replicas.GENRES) + 1}")
    config = inprocess.configuration(tmp_path, "refnet_ms", dataset, opts=opts)
    monkeypatch.setitem(registry.mapping["state"], "config", config)  # what MMF's trainer registers
    monkeypatch.setitem(registry.mapping["state"], "current_device", torch.device("cpu"))
    instance = build_dataset(dataset, config.dataset_config[dataset], "train")
    assert all(isinstance(part, text_padding.TextPaddingMixin) for part in instance.datasets)  # MMFConcatDataset
    batch = BatchCollator(dataset, "train")([instance[i] for i in range(8)])
    assert batch.input_ids.size(1) == 16  # the tiny configs' max_seq_length
    longest = int(batch.input_mask.sum(1).max())
    return instance.prepare_batch(batch), longest


@pytest.mark.parametrize("dataset", ["hateful_memes", "mmimdb", "visual_entailment"])
def test_project_datasets_cut_padding_in_prepare_batch(tmp_path, monkeypatch, data_dir, dataset):
    prepared, longest = _dataset_batch(tmp_path, monkeypatch, data_dir, dataset)
    assert longest <= 8  # replica texts are 5 words
    assert prepared.input_ids.size(1) == prepared.input_mask.size(1) == prepared.segment_ids.size(1) == 8
    assert int(prepared.input_mask.sum(1).max()) == longest


def test_text_padding_off_keeps_max_seq_length(tmp_path, monkeypatch, data_dir):
    prepared, _ = _dataset_batch(tmp_path, monkeypatch, data_dir, "hateful_memes", opts=["training.text_padding=off"])
    assert prepared.input_ids.size(1) == 16


def test_mmf_run_accepts_the_keys_and_trains_alike_with_and_without_trimming(tmp_path, data_dir):
    """The real path (unmodified mmf_run, subprocess): the keys exist for rc10's CLI; results agree."""
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert",
                                {"training": {"max_updates": 4, "log_interval": 2, "evaluation_interval": 4,
                                              "checkpoint_interval": 4, "batch_size": 8}})
    logged = {}
    for mode in ("off", "buckets"):
        save_dir = str(tmp_path / mode)
        runner.run_mmf("mmf_run", config, str(data_dir), save_dir, f"training.text_padding={mode}",
                       "training.text_padding_buckets=[8]")
        with open(os.path.join(save_dir, "train.log")) as handle:
            log = handle.read()
        expected = "text padding off" if mode == "off" else "text padding: buckets [8]"
        assert f"hateful_memes (train): {expected}" in log
        progress = [line for line in log.splitlines() if "progress:" in line]
        logged[mode] = [{key: float(value) for key, value in re.findall(r"((?:train|val)/[\w/]+): ([0-9.]+)", line)}
                        for line in progress]
    assert len(logged["off"]) >= 3 and all(logged["off"])  # train losses at updates 2 and 4, then validation
    assert any("val/hateful_memes/roc_auc" in line for line in logged["off"])
    assert [set(line) for line in logged["buckets"]] == [set(line) for line in logged["off"]]
    for trimmed, padded in zip(logged["buckets"], logged["off"]):
        for key, value in padded.items():
            assert trimmed[key] == pytest.approx(value, abs=2e-4), key


def test_every_text_dataset_the_project_registers_cuts_padding():
    from mmf.common.registry import registry

    from mmf_refnet.data import label_fraction
    from mmf_refnet.data.builder import EmojiMemesDataset
    from mmf_refnet.data.image_text import ImageTextDataset

    for dataset_class in (label_fraction.HatefulMemesDataset, label_fraction.HatefulMemesImagesDataset,
                          label_fraction.MMIMDbLabelFractionDataset,
                          label_fraction.VisualEntailmentLabelFractionDataset, EmojiMemesDataset, ImageTextDataset):
        assert issubclass(dataset_class, text_padding.TextPaddingMixin), dataset_class
    assert registry.get_builder_class("emoji_memes") is not None
