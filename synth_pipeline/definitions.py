"""The Dagster code location: assets and checks for every table, the job, the schedule.

Which database it synthesizes comes from the YAML file named by ``SYNTH_PIPELINE_CONFIG``;
without it, the embedded school database (simulated on first use).
"""

from synth_pipeline.config import load_config
from synth_pipeline.pipeline import build_definitions

_config = load_config()
defs = build_definitions(_config.metadata(), _config)
