"""Writing evals: prompts, LLM providers, candidates, refinement, the generation run.

A change to how an eval is written (a prompt, a provider, retries, pricing) belongs here;
the offline learner it can call is ``evals.synthesis``.
"""
