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


def remote_user_error(err: BaseException) -> UserError | None:
    """The UserError a Ray task or actor method raised, when `err` (Ray's RayTaskError, which
    keeps the remote exception as `.cause`) wraps one; callers re-raise it so the user reads
    its one line, not Ray's traceback. Duck-typed, so this module needs no Ray import."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, UserError) else None
