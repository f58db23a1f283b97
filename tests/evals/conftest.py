import pytest

from tests.evals.builders import use_fake_openai
from tests.fakes.llm_server import fake_llm  # noqa: F401 (a fixture shared by the evals tests)


@pytest.fixture
def openai_workspace(workspace, fake_llm):  # noqa: F811 (the fixture imported above)
    """The workspace, generating with OpenAI's API on the loopback fake."""
    return use_fake_openai(workspace, fake_llm)
