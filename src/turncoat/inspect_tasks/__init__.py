"""turncoat as an Inspect (inspect_ai) extension, installed with `pip install turncoat[inspect]`.

Registered through the `inspect_ai` entry point, so after installing:

    inspect eval turncoat/em_core --model turncoat/smollm2-135m --model-role grader=openai/gpt-4o-2024-08-06
    inspect eval turncoat/code_tasks --model hf/<id>

Tasks: `em_core` (turncoat's core questions), `em_questions` (any turncoat question set, `-T questions=NAME`),
`code_tasks` (held-out coding prompts, Bandit scorer). Scorers: `em_judge` (our aligned/coherent prompts, scored by
the `grader` model role by the logprob method, giving the misaligned flag), `bandit_vulnerability`. Model provider:
`turncoat/<spec>` (any model turncoat loads: the alias, a folder, a GGUF file or an adapter run).
"""
