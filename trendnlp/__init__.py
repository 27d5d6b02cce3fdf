"""trendnlp: will this product's sales go rising, falling or stable? Text (BERT + LoRA) + sales history (LSTM)."""
from trendnlp.config import TrendConfig
from trendnlp.labels import LABELS, LabelRule

__version__ = "0.1.0"
__all__ = ["LABELS", "LabelRule", "TrendClassifier", "TrendConfig", "__version__", "load_model"]


def __getattr__(name: str):
    # the model pulls in torch/transformers; import it on first use so `trendnlp prepare` starts fast
    if name == "TrendClassifier":
        from trendnlp.model.classifier import TrendClassifier

        return TrendClassifier
    if name == "load_model":
        from trendnlp.model.load import load_model

        return load_model
    raise AttributeError(f"module 'trendnlp' has no attribute {name!r}")
