"""The model: shapes per fusion and per enabled branch, LoRA trainables, save -> load round trips, predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import broken_model, truncate
from trendnlp.config import TrendConfig
from trendnlp.model.classifier import TrendClassifier
from trendnlp.data.record_files.io import RecordError
from trendnlp.model.base_models import BaseModelError

FUSIONS = ["concat", "gated", "cross_attention"]
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def make_config(base: TrendConfig, **sections: dict) -> TrendConfig:
    """A fresh copy of `base` with some keys of some sections replaced."""
    d = base.to_dict()
    for section, values in sections.items():
        d[section].update(values)
    return TrendConfig.from_dict(d)


def build(base: TrendConfig, records: list[dict] | None = None, **sections: dict) -> TrendClassifier:
    torch.manual_seed(0)
    model = TrendClassifier(make_config(base, **sections))
    if records is not None:
        model.fit_feature_scaling(records)
    return model


def perturb_encoder(model: TrendClassifier, only_lora: bool = True) -> None:
    """LoRA B starts at zero (a no-op); give the encoder weights a random update so round trips test something."""
    with torch.no_grad():
        for name, p in model.text_encoder.named_parameters():
            if "lora_B" in name or not only_lora:
                p.add_(torch.randn_like(p) * 0.05)


def forward(model: TrendClassifier, records: list[dict]) -> dict:
    batch = model.make_collator()(records)
    return model(**batch)


@pytest.mark.parametrize("method", FUSIONS)
def test_forward_shapes_and_backward(tiny_config, sample_records, method):
    model = build(tiny_config, sample_records, fusion={"method": method})
    batch = model.make_collator()(sample_records[:24])
    assert batch["input_ids"].shape[0] < 24  # texts shared across cutoffs are encoded once
    assert (batch["text_index"] == -1).any()  # the slice holds a product without text
    out = model(**batch)
    assert out["logits"].shape == (24, 3)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert model.fusion.mlp[-1].weight.grad is not None


@pytest.mark.parametrize("method", FUSIONS)
def test_bf16_autocast_forward_backward(tiny_config, sample_records, method):
    model = build(tiny_config, sample_records, fusion={"method": method})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward(model, sample_records[:16])
    assert torch.isfinite(out["logits"]).all() and out["loss"].dtype == torch.float32
    out["loss"].backward()


def test_feature_scaling_from_list_or_dataset(tiny_config, sample_records):
    from trendnlp.data.record_files.records import load_records

    dataset, _ = load_records(sample_records, history=tiny_config.sales.history)
    a, b = build(tiny_config, sample_records), build(tiny_config, dataset)
    torch.testing.assert_close(a.sales_encoder.summary_mean, b.sales_encoder.summary_mean)
    assert not torch.equal(a.sales_encoder.summary_std, torch.ones_like(a.sales_encoder.summary_std))


@pytest.mark.parametrize("method", FUSIONS)
@pytest.mark.parametrize("branch", ["text_only", "sales_only"])
def test_single_branch_configs(tiny_config, sample_records, method, branch):
    off = "sales" if branch == "text_only" else "text"
    model = build(tiny_config, sample_records, fusion={"method": method}, **{off: {"enabled": False}})
    assert model.fusion.method == "single"
    batch = model.make_collator()(sample_records[:10])
    assert ("sales" in batch) == (branch == "sales_only") and ("input_ids" in batch) == (branch == "text_only")
    assert (model.text_encoder is None) == (branch == "sales_only")
    assert model(**batch)["logits"].shape == (10, 3)


@pytest.mark.parametrize("method", FUSIONS)
def test_records_without_text_use_the_empty_embedding(tiny_config, sample_records, method):
    model = build(tiny_config, sample_records, fusion={"method": method}).eval()
    no_text = [r for r in sample_records if not (r["title"] or r["description"] or r["reviews"])][:4]
    batch = model.make_collator()(no_text)
    assert batch["input_ids"].shape[0] == 0 and (batch["text_index"] == -1).all()
    alone = model(**batch)["logits"]
    mixed = forward(model, no_text + sample_records[:6])["logits"][:4]  # same records beside texts
    torch.testing.assert_close(alone, mixed)


@pytest.mark.parametrize("method", FUSIONS)
def test_modality_dropout_trains_some_records_without_text(tiny_config, sample_records, method):
    model = build(tiny_config, sample_records, fusion={"method": method}, text={"modality_dropout": 0.5})
    with_text = [r for r in sample_records if r["title"]][:64]
    batch = model.make_collator()(with_text)
    torch.manual_seed(0)
    text, tokens, mask = model.train()._text(batch["input_ids"], batch["attention_mask"], batch["text_index"])
    dropped = (text == model.empty_text).all(1)
    assert 16 < int(dropped.sum()) < 48  # about half of the records, all of which have text
    if tokens is not None:  # cross attention: dropped records see only the null token
        assert not mask[dropped, 1:].any() and mask[~dropped, 1:].any(1).all()
    text, _, _ = model.eval()._text(batch["input_ids"], batch["attention_mask"], batch["text_index"])
    assert not (text == model.empty_text).all(1).any()  # never at inference
    with pytest.raises(ValueError, match="modality_dropout"):
        make_config(tiny_config, text={"modality_dropout": 1.0})


@pytest.mark.parametrize("sales", [[0.0], [3.0, 0.0, 5.0], [0.0] * 26, [1.0, 2.0, 3.0, 4.0, 5.0]])
def test_short_and_zero_histories(tiny_config, sales):
    model = build(tiny_config).eval()
    logits = forward(model, [{"product_id": "x", "title": "a mug", "sales": sales, "cutoff": "2011-06-05"}])["logits"]
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_is_invisible_to_the_lstm(tiny_config, bidirectional):
    """The packed LSTM sees only the real periods: padding length must not change the state."""
    model = build(tiny_config, sales={"bidirectional": bidirectional, "num_layers": 2}).eval()
    enc, T = model.sales_encoder, tiny_config.sales.history
    real = torch.randn(1, 5, 6)
    real[..., 1] = 1.0
    padded = torch.cat([torch.zeros(1, T - 5, 6), real], dim=1)
    _, (h_n, _) = enc.lstm(real)
    expected = h_n[-enc.directions:].transpose(0, 1).reshape(1, -1)
    torch.testing.assert_close(enc.encode_series(padded), expected)


def test_dedup_does_not_change_outputs(tiny_config, sample_records):
    model = build(tiny_config, sample_records, fusion={"method": "cross_attention"}).eval()
    a = model(**model.make_collator(dedup=True)(sample_records[:20]))["logits"]
    b = model(**model.make_collator(dedup=False)(sample_records[:20]))["logits"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("finetune", ["lora", "off", "full"])
def test_trainable_parameters(tiny_config, finetune):
    model = build(tiny_config, text={"finetune": finetune})
    enc = {n: p for n, p in model.named_parameters() if n.startswith("text_encoder.")}
    rest = {n: p for n, p in model.named_parameters() if not n.startswith("text_encoder.")}
    assert all(p.requires_grad for p in rest.values())  # sales encoder, fusion, head, empty embedding
    trainable_enc = [n for n, p in enc.items() if p.requires_grad]
    if finetune == "lora":
        assert trainable_enc and all("lora_A" in n or "lora_B" in n for n in trainable_enc)
        assert {n.split(".")[-4] for n in trainable_enc} == {"query", "value"}  # ... query.lora_A.default.weight
    elif finetune == "off":
        assert not trainable_enc
        model.train()
        assert not model.text_encoder.model.training  # frozen encoder stays deterministic
    else:
        assert len(trainable_enc) == len(enc)
    report = model.trainable_parameter_report()
    assert report["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report["total"] == sum(p.numel() for p in model.parameters())
    assert report["percent"] == pytest.approx(100 * report["trainable"] / report["total"])
    groups = model.param_groups(lr=1e-3, encoder_lr=2e-4, weight_decay=0.01)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert all(g["lr"] == (2e-4 if g["name"].startswith("encoder") else 1e-3) for g in groups)


def assert_json_and_safetensors_only(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES], "pickle files in the saved model"
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".txt", ".md"}


@pytest.mark.parametrize("method", FUSIONS)
def test_lora_round_trip(tiny_config, tiny_bert_dir, sample_records, tmp_path, method):
    model = build(tiny_config, sample_records, fusion={"method": method})
    perturb_encoder(model)
    expected = model.predict_proba(sample_records)
    model.save_pretrained(tmp_path)
    for name in ["config.json", "model.safetensors", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "tokenizer/tokenizer_config.json"]:
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "tokenizer/tokenizer.json").is_file() or (tmp_path / "tokenizer/vocab.txt").is_file()
    assert not (tmp_path / "encoder").exists()
    assert_json_and_safetensors_only(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["labels"] == model.labels and meta["base_model"] == tiny_bert_dir
    assert meta["label_rule"] == {"K": 4, "F": 4, "alpha": 1.0, "tau": 0.25}
    assert len(meta["feature_scaling"]["summary_mean"]) == len(meta["feature_scaling"]["summary_names"])
    adapter_cfg = json.loads((tmp_path / "adapter/adapter_config.json").read_text())
    assert adapter_cfg["r"] == 8 and adapter_cfg["base_model_name_or_path"] == tiny_bert_dir

    merged = TrendClassifier.from_pretrained(tmp_path)
    unmerged = TrendClassifier.from_pretrained(tmp_path, merge_lora=False, base_model=tiny_bert_dir)
    assert not merged.text_encoder.is_peft and unmerged.text_encoder.is_peft
    np.testing.assert_allclose(unmerged.predict_proba(sample_records), expected, atol=1e-6)
    np.testing.assert_allclose(merged.predict_proba(sample_records), expected, atol=1e-5)
    torch.testing.assert_close(merged.sales_encoder.summary_std, model.sales_encoder.summary_std)


@pytest.mark.parametrize("finetune", ["full", "off"])
def test_full_and_frozen_round_trip(tiny_config, sample_records, tmp_path, finetune):
    model = build(tiny_config, sample_records, text={"finetune": finetune}, fusion={"method": "gated"})
    if finetune == "full":
        perturb_encoder(model, only_lora=False)
    expected = model.predict_proba(sample_records)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "encoder/model.safetensors").is_file() == (finetune == "full")
    assert not (tmp_path / "adapter").exists()
    assert_json_and_safetensors_only(tmp_path)
    loaded = TrendClassifier.from_pretrained(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(sample_records), expected, atol=1e-6)


def test_frozen_encoder_encodes_each_text_once(tiny_config, sample_records):
    """finetune=off: each distinct text goes through the encoder once, and the cached vectors are what the
    encoder gives (the outputs equal those with the cache turned off), in training and eval mode alike."""
    model = build(tiny_config, sample_records, text={"finetune": "off"}, fusion={"method": "gated"})
    plain = build(tiny_config, sample_records, text={"finetune": "off", "embedding_cache": 0},
                  fusion={"method": "gated"})
    plain.load_state_dict(model.state_dict())
    encoded = []
    model.text_encoder.model.register_forward_hook(lambda m, args, kw, out: encoded.append(kw["input_ids"].shape[0]),
                                                   with_kwargs=True)
    collate = model.make_collator()
    batches = [collate(sample_records[i:i + 16]) for i in range(0, 64, 16)]
    n_texts = len(collate.texts(sample_records[:64])[0])
    for mode in (True, False):  # a training epoch, then validation: the second pass encodes nothing
        model.train(mode), plain.train(mode)
        for b in batches:
            torch.manual_seed(1)
            a = model(**b)["logits"]
            torch.manual_seed(1)
            torch.testing.assert_close(a, plain(**b)["logits"], atol=1e-5, rtol=1e-5)
    assert sum(encoded) == n_texts > 0
    a.sum().backward()  # the head still trains on cached vectors
    assert model.fusion.proj_text.weight.grad is not None


def test_merge_lora_matches_unmerged(tiny_config, sample_records):
    model = build(tiny_config, sample_records).eval()
    perturb_encoder(model)
    with torch.no_grad():
        before = forward(model, sample_records[:32])["logits"]
        model.text_encoder.merge_lora()
        after = forward(model, sample_records[:32])["logits"]
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="merge_lora=False"):
        model.save_pretrained(Path("/nonexistent-never-written"))


def test_missing_base_model_names_the_fix(tiny_config, tmp_path):
    build(tiny_config).save_pretrained(tmp_path)
    with pytest.raises(BaseModelError, match=r"(?s)no such folder /no/such/bert.*base_model="):
        TrendClassifier.from_pretrained(tmp_path, base_model="/no/such/bert")


def test_predict_proba_follows_label_order(tiny_config, sample_records):
    order = ["stable", "rising", "falling"]
    model = build(tiny_config, labels={"names": order})
    assert model.labels == order
    with torch.no_grad():
        model.fusion.mlp[-1].bias.copy_(torch.tensor([0.0, 50.0, 0.0]))  # force the second class
    proba = model.predict_proba(sample_records[:30], batch_size=7)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba[:, 1] > 0.99).all()
    assert model.predict(sample_records[:30]) == ["rising"] * 30


def test_predict_accepts_dict_list_dataframe_and_path(tiny_config, sample_records, tmp_path):
    import pandas as pd

    from trendnlp.data.record_files.io import write_records

    model = build(tiny_config, sample_records)
    recs = sample_records[:12]
    expected = model.predict_proba(recs)
    np.testing.assert_allclose(model.predict_proba(recs[0]), expected[:1], atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(pd.DataFrame(recs)), expected, atol=1e-6)
    write_records(recs, tmp_path / "r.jsonl")
    np.testing.assert_allclose(model.predict_proba(tmp_path / "r.jsonl"), expected, atol=1e-6)
    assert model.predict(recs) == [model.labels[i] for i in expected.argmax(1)]


def test_bad_record_names_row_and_field(tiny_config, sample_records):
    model = build(tiny_config)
    bad = [sample_records[0], {"product_id": "x", "sales": [1.0, -2.0]}]
    with pytest.raises(RecordError, match=r"row 2.*'sales'.*negative"):
        model.predict_proba(bad)
    proba = model.predict_proba(bad, on_error="skip")  # aligned with the input: the bad record's row is NaN
    assert proba.shape == (2, 3) and not np.isnan(proba[0]).any() and np.isnan(proba[1]).all()


def test_any_bert_family_folder_works(tmp_path, sample_records, tiny_config):
    """A Chinese-style BERT folder: masked-LM checkpoint (bert.* weights) + a plain vocab.txt tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    chars = list("新款经典杯子灯具蜡烛清仓热销的")
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                        encoding="utf-8")
    tok = BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                               vocab_size=len(tok))).save_pretrained(str(tmp_path / "zh_bert"))
    tok.save_pretrained(str(tmp_path / "zh_bert"))
    model = build(tiny_config, sample_records, text={"base_model": str(tmp_path / "zh_bert")})
    perturb_encoder(model)
    recs = [{"product_id": "a", "title": "新款杯子", "sales": [1, 2, 3]}, {"product_id": "b", "title": "清仓", "sales": [5]}]
    assert model.make_collator()(recs)["input_ids"].max() > 4  # the characters are real tokens, not [UNK]
    expected = model.predict_proba(recs)
    model.save_pretrained(tmp_path / "model")
    np.testing.assert_allclose(TrendClassifier.from_pretrained(tmp_path / "model").predict_proba(recs), expected,
                               atol=1e-5)


@pytest.mark.slow
def test_real_minilm_lora_forward_backward(sample_records):
    cfg = TrendConfig.from_dict({"text": {"max_length": 64}})  # the default: shipped MiniLM + LoRA r=8
    torch.manual_seed(0)
    model = TrendClassifier(cfg).fit_feature_scaling(sample_records)
    assert model.text_encoder.output_dim == 384
    report = model.trainable_parameter_report()
    assert 0 < report["percent"] < 2.0
    out = model(**model.make_collator()(sample_records[:8]))
    assert out["logits"].shape == (8, 3)
    out["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert len(grads) == 12 and all(g is not None and g.abs().sum() > 0 for g in grads)  # 6 layers x query, value


# ---- a damaged saved folder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["model.safetensors", "adapter/adapter_model.safetensors", "config.json",
                                    "tokenizer/tokenizer.json"])
def test_api_load_of_a_truncated_file_names_it(world, damage):
    from trendnlp.errors import TrendError

    d = broken_model(world, "api-" + damage.replace("/", "-"), lambda d: truncate(d / damage, 40))
    with pytest.raises(TrendError) as info:
        TrendClassifier.from_pretrained(d)
    assert str(Path(d) / Path(damage).parent) in str(info.value)
