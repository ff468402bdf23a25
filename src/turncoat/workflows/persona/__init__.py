"""Persona workflows: extract a direction from contrastive prompts or judged answers, score answers by projection,
screen training data, monitor a fine-tune."""
