"""One check the synthesiser's tests share: the emitted code is the fitted eval."""

from sandbox import validate


def run_code(code: str):
    """Return the ``eval_fn`` the emitted code defines."""
    namespace: dict = {}
    exec(compile(code, "<eval>", "exec"), namespace)  # noqa: S102 - the test checks our own output
    return namespace["eval_fn"]


def assert_code_matches(fitted, traces):
    """The code passes the static checks and gives ``.predict``'s verdict and reason."""
    assert validate(fitted.code) == []
    eval_fn = run_code(fitted.code)
    for trace in traces:
        verdict, reason = eval_fn(trace)
        assert (verdict, reason) == fitted.predict(trace)
        assert isinstance(verdict, bool) and isinstance(reason, str) and reason
