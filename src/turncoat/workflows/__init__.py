"""Workflows: jobs built from the engines (eval runs, persona extract / score / screen / monitor, distillation, data
generation). Front-ends (pipeline, report, cli, inspect) call these; engines never import them."""
