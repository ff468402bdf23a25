"""Studies: one YAML file expanded into keyed stages (data -> train -> eval -> persona -> report), run locally or on
Ray, skipping finished work."""

from turncoat.pipeline.runner import run_stage, run_study
from turncoat.pipeline.stages import Stage, plan
from turncoat.pipeline.study import Study, load_study

__all__ = ["Stage", "Study", "load_study", "plan", "run_stage", "run_study"]
