"""trendnlp's own error types (the ground floor: every stage may import this module).

Anything derived from `TrendError` is a failure the library understood: bad input, a broken model folder,
an unusable option or output path. The CLI prints it as one line, `trendnlp <verb>: error: <message>`,
and exits with code 2; the message itself must say what was expected, what was found, where (file, row,
field) and how to fix it. Each subclass also derives from the builtin its callers used to catch
(`ValueError`, `OSError`, `RuntimeError`), so `except ValueError` keeps working.
"""
from __future__ import annotations


class TrendError(Exception):
    """Base class of every error trendnlp raises on purpose (the CLI shows it as one line, exit code 2)."""


class ConfigError(TrendError, ValueError):
    """A config value or command-line option is invalid; the message names the key and the value."""


class DataError(TrendError, ValueError):
    """An input table or file cannot be used (empty, not UTF-8, unreadable, values that overflow)."""


class ModelFolderError(TrendError, ValueError):
    """A saved model folder is incomplete, corrupt or does not match its config.json."""


class OutputPathError(TrendError, OSError):
    """An output path cannot be written (its parent is a file, the folder is read-only) or would destroy an input."""


class OutputLockedError(OutputPathError):
    """Another run (another process) is writing the same output right now."""


class ResumeError(TrendError, RuntimeError):
    """A run cannot continue from the state found on disk (written by another config, data or model)."""
