"""learner-export: streaming exports of learners from PostgreSQL."""

# The one place the version is written: pyproject.toml reads it when the wheel is built.
__version__ = "0.1.0"
