"""Domain errors. Each message names the bad value and the fix; the CLI and the UI show them as one line."""


class PlaygroundError(Exception):
    """An expected failure a user can fix. Shown without a traceback."""


class ConfigError(PlaygroundError):
    """The lineup file or a setting is wrong."""


class ModelSourceError(PlaygroundError):
    """The base model could not be found or loaded."""


class AdapterError(PlaygroundError):
    """An adapter folder is missing files, unsafe, or made for another base."""


class GenerationError(PlaygroundError):
    """A generation request is invalid (unknown variant, bad sampling value, empty prompt)."""


class FeedbackError(PlaygroundError):
    """feedback.db cannot be used (not a database, damaged, locked, read-only) or a record is invalid."""
