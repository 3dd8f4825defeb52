"""The exceptions a user can cause; each carries one line naming the table and column."""


class SynthPipelineError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class SchemaError(SynthPipelineError):
    """The metadata (or the data checked against it) is not a usable relational schema."""


class SourceError(SynthPipelineError):
    """A source database or file cannot be read."""


class ConfigError(SynthPipelineError):
    """A configuration value is missing or invalid."""
