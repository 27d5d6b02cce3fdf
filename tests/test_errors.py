"""The error types (trendnlp.errors): every error the library raises on bad input shares one base."""
from __future__ import annotations

from trendnlp.errors import ConfigError, ModelFolderError, OutputPathError, ResumeError, TrendError


def test_error_types_share_one_base():
    from trendnlp.data.record_files.io import RecordError
    from trendnlp.inference.labeling_io import ResumeMismatchError
    from trendnlp.model.base_models import BaseModelError

    for cls in (RecordError, ConfigError, ModelFolderError, OutputPathError, ResumeError, BaseModelError,
                ResumeMismatchError):
        assert issubclass(cls, TrendError)
    assert issubclass(RecordError, ValueError) and issubclass(BaseModelError, OSError)  # old catches still work
