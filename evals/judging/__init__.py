"""LLM judges inside eval code: judge()/llm() calls, their cache, budget and cost."""
