"""The shapes of the comparison matrix: filters, columns, rows, cells, a cell's detail."""

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

from evals.models import Eval, EvalExecution
from traces.models import EvalSet, Trace


@dataclass(frozen=True)
class MatrixFilters:
    only_disagreements: bool = False
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    source: str = ""
    version_ids: tuple[int, ...] = ()


@dataclass
class VersionColumn:
    eval: Eval
    agree: int = 0
    contradict: int = 0
    errors: int = 0
    not_run: int = 0

    @property
    def judged(self) -> int:
        return self.agree + self.contradict


class Verdict(NamedTuple):
    """The parts of an execution that the matrix shows."""

    passed: bool | None
    reason: str
    error: str
    duration_ms: float


class MatrixTrace(NamedTuple):
    """The parts of a trace that a matrix row shows (its name, time, input and output)."""

    id: int
    name: str
    external_id: str
    timestamp: dt.datetime
    source: str
    input: object
    output: object

    @property
    def pk(self) -> int:
        return self.id


@dataclass
class MatrixCell:
    eval_id: int
    execution: Verdict | None
    state: str  # agree | contradict | error | neutral | missing
    url: str = ""

    @property
    def verdict(self) -> str:
        if self.execution is None:
            return "—"
        if self.execution.passed is None:
            return "error"
        return "pass" if self.execution.passed else "fail"

    @property
    def spoken(self) -> str:
        """The cell as a screen reader reads it (its aria-label): "—" alone reads as nothing."""
        if self.execution is None:
            return "not run"
        return f"{self.verdict}, {_SPOKEN_STATES.get(self.state, self.state)}"


_SPOKEN_STATES = {
    "agree": "agrees with the label",
    "contradict": "contradicts the label",
    "neutral": "neutral label",
    "error": "no verdict",
}


@dataclass
class MatrixRow:
    trace: MatrixTrace
    label: str
    notes: list[str]
    cells: list[MatrixCell] = field(default_factory=list)


@dataclass
class Matrix:
    eval_set: EvalSet
    columns: list[VersionColumn]
    rows: list[MatrixRow]
    filters: MatrixFilters
    page: int
    page_size: int
    total_rows: int
    all_versions: list[Eval]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_rows // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


@dataclass
class CellDetail:
    eval: Eval
    trace: Trace
    label: str | None
    notes: list[str]
    execution: EvalExecution | None
    state: str
