"""The configuration (trendnlp.config): out-of-range values refused naming the key and value, numpy numbers
accepted as plain numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trendnlp.config import TrendConfig
from trendnlp.errors import ConfigError


@pytest.mark.parametrize("key,value", [("train.epochs", 0), ("train.lr", -1e-4), ("train.lr", 0.0),
                                       ("train.encoder_lr", float("nan")), ("train.batch_size", 0),
                                       ("train.eval_batch_size", -3), ("train.gradient_accumulation_steps", 0),
                                       ("train.warmup_ratio", 1.0), ("train.max_grad_norm", 0.0),
                                       ("text.lora_r", 0), ("sales.history", 0), ("fusion.dropout", 1.5),
                                       ("data.val_fraction", 0.0), ("labels.tau", float("inf"))])
def test_config_rejects_out_of_range_values(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=name):
        TrendConfig.from_dict({section: {name: value}})


def test_config_accepts_numpy_numbers():
    from trendnlp.config import TrainConfig

    cfg = TrendConfig.from_dict({"train": {"epochs": np.int64(3), "lr": np.float32(1e-3), "class_weights": np.bool_(0)},
                                 "labels": {"K": np.int64(2)}})
    assert (cfg.train.epochs, cfg.train.class_weights, cfg.labels.K) == (3, False, 2)
    direct = TrendConfig(train=TrainConfig(epochs=np.int64(2), batch_size=np.int32(8)))  # built directly, too
    assert type(direct.train.epochs) is int and json.dumps(direct.to_dict())


def test_config_errors_name_the_key_and_value():
    with pytest.raises(ConfigError, match=r"train\.epochs must be >= 1, found 0"):
        TrendConfig.from_dict({"train": {"epochs": 0}})
