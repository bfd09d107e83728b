"""Errors a user can cause. The CLI turns any `UserError` into one line on stderr and exit 2;
every other exception is a bug and keeps its traceback. Kept import-light on purpose."""


class UserError(Exception):
    """Something the user gave us is unusable; the message is one line naming the culprit."""


class ConfigError(UserError, ValueError):
    """A config file cannot be used (file, field path, reason)."""


class DataFileError(UserError, ValueError):
    """A whole data file is unusable (missing, unreadable, missing columns)."""


class ModelLoadError(UserError, RuntimeError):
    """A model or tokenizer location cannot be loaded."""


class LoraTargetError(UserError, ValueError):
    """None of the configured LoRA target modules exist in the model."""
