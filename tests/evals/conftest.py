from tests.fakes.llm_server import fake_llm  # noqa: F401 (a fixture shared by the evals tests)
