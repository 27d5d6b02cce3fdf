"""The configs shipped inside the package, so an installed wheel trains without a checkout of the repository.

    default.yaml        the shipped MiniLM + LSTM (+ LightGBM), sized for a few CPU minutes on a small shop
    online_retail.yaml  the Online Retail benchmark's model (`--preset online-retail`, `trendnlp benchmark`)

The repository's `configs/` folder links to these files; copy one to start a config of your own.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
PRESET_CONFIGS = {"online-retail": "online_retail"}  # a preset's own config, when --config is not given


def config_path(name: str = "default") -> Path:
    """The path of a shipped config by name (`default`, `online_retail`).

    >>> config_path().name
    'default.yaml'
    """
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"no shipped config named {name!r}; known: {', '.join(known)}")
    return path


def default_config(preset: str | None = None) -> Path:
    """The config `trendnlp train --sales/--records` uses without --config: the preset's own, else `default`.

    >>> default_config("online-retail").name, default_config(None).name
    ('online_retail.yaml', 'default.yaml')
    """
    return config_path(PRESET_CONFIGS.get((preset or "").lower(), "default"))
