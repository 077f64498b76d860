"""The clinic's cases: their schema, loading and checking case files, and the measurement rule.

Core objects:
    Case: one consultation case (OSCE style): the doctor's objective, the patient actor, the
        examination findings, the test results and the correct diagnosis with its synonyms
        and differential. ``PatientActor``, ``Demographics``, ``PhysicalExam``,
        ``VitalSigns`` and ``TestResult`` are its parts.
    CaseLibrary: an ordered, immutable collection of cases with unique ids.
    load_cases: read case files (a file or a folder) into a library; ``CaseError`` lists
        every problem, each naming the file, the case id and the field.
    default_library: the library shipped with Populace (``scenarios/clinic/cases/``).
    result_of: what a test returns for a case (the case's result; "normal" for a test the
        case does not list; None as the name of a test nobody knows).

The schema is documented field by field in ``scenarios/clinic/cases/README.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .diagnosis import names_match
from .vocabulary import (
    EXAM_SYSTEMS,
    SPECIALTIES,
    SYMPTOM_VOCABULARY,
    TEST_VOCABULARY,
    implied_symptoms,
    key_of_test,
    normalise_test,
)

CASES_DIR = Path(__file__).resolve().parent / "cases"
"""Where the shipped library lives."""

NORMAL_RESULT = "normal"
"""The result text of a test the case does not list (AgentClinic's rule)."""

LIBRARY_SOURCE = "populace"
"""``Case.source`` of a case written in this schema; the library rules apply to these."""


def _canonical_test(name: str) -> str:
    if name in TEST_VOCABULARY:
        return name
    canonical = normalise_test(name)
    if canonical is not None:
        raise ValueError(f"{name!r} is not a canonical test name: write {canonical!r}")
    raise ValueError(f"unknown test {name!r}: use a name of the test vocabulary, or list it "
                     f"under case_tests")


def _case_test(name: str) -> str:
    canonical = normalise_test(name)
    if canonical is not None:
        raise ValueError(f"{name!r} is the vocabulary's test {canonical!r}: list it under "
                         f"tests as {canonical!r}")
    if not key_of_test(name):
        raise ValueError(f"{name!r} is not a test name")
    return name


def _symptom_key(key: str) -> str:
    if key not in SYMPTOM_VOCABULARY:
        raise ValueError(f"unknown symptom key {key!r} (see the symptom vocabulary)")
    return key


def _exam_system(name: str) -> str:
    if name not in EXAM_SYSTEMS:
        raise ValueError(f"unknown examination system {name!r}; one of {', '.join(EXAM_SYSTEMS)}")
    return name


def _specialty(name: str) -> str:
    if name not in SPECIALTIES:
        raise ValueError(f"unknown specialty {name!r}; one of {', '.join(SPECIALTIES)}")
    return name


TestName = Annotated[str, AfterValidator(_canonical_test)]
CaseTestName = Annotated[str, AfterValidator(_case_test)]
SymptomKey = Annotated[str, AfterValidator(_symptom_key)]
ExamSystem = Annotated[str, AfterValidator(_exam_system)]
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TestResult(_Model):
    """The result of one test for one case."""

    __test__ = False  # not a pytest test class

    result: Text = Field(description="The report as the measurement agent gives it, values "
                                     "with units and reference ranges where useful.")
    abnormal: bool = Field(description="Whether the result is outside normal limits.")
    decisive: bool = Field(False, description="Whether this result establishes or strongly "
                                              "supports the correct diagnosis (a needed test).")


class Demographics(_Model):
    """Who the patient is; age and sex are None when an imported case does not say."""

    age: int | None = Field(ge=0, le=120, description="Age in years.")
    sex: Literal["female", "male"] | None = Field(description="Sex.")
    description: str = Field("", description="Free text: occupation, origin, anything the "
                                             "patient would say about themselves.")


class PatientActor(_Model):
    """What the patient knows and tells: never the diagnosis."""

    demographics: Demographics
    history: Text = Field(description="The history of the presenting illness, in the "
                                      "patient's terms.")
    primary_symptom: Text = Field(description="The main complaint.")
    secondary_symptoms: list[Text] = Field(default_factory=list,
                                           description="Other complaints.")
    past_medical_history: str = ""
    social_history: str = ""
    family_history: str = ""
    review_of_systems: str = Field("", description="Pertinent positives and negatives.")
    medications: list[Text] = Field(default_factory=list)
    allergies: list[Text] = Field(default_factory=list)
    symptom_keys: list[SymptomKey] = Field(
        default_factory=list,
        description="Keys of the symptom vocabulary the patient has (every key absent here "
                    "is a symptom the patient does not have): the rule doctor's evidence.")

    @field_validator("symptom_keys")
    @classmethod
    def _keys_complete(cls, keys: list[str]) -> list[str]:
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        missing = sorted(implied_symptoms(keys) - set(keys))
        if missing:
            raise ValueError(f"implied but not listed: {', '.join(missing)} (a specific "
                             f"symptom implies its general one)")
        return keys


class VitalSigns(_Model):
    """Vital signs with their units in the field names; None where a case does not say."""

    temperature_c: float | None = Field(None, ge=25, le=45, description="Degrees Celsius.")
    heart_rate_bpm: int | None = Field(None, ge=10, le=300, description="Beats per minute.")
    respiratory_rate_per_min: int | None = Field(None, ge=2, le=80,
                                                 description="Breaths per minute.")
    systolic_bp_mmhg: int | None = Field(None, ge=30, le=300, description="mmHg.")
    diastolic_bp_mmhg: int | None = Field(None, ge=10, le=200, description="mmHg.")
    oxygen_saturation_pct: float | None = Field(None, ge=40, le=100,
                                                description="SpO2 in percent.")

    @model_validator(mode="after")
    def _pressure_order(self) -> VitalSigns:
        if (self.systolic_bp_mmhg is not None and self.diastolic_bp_mmhg is not None
                and self.diastolic_bp_mmhg >= self.systolic_bp_mmhg):
            raise ValueError("diastolic_bp_mmhg must be below systolic_bp_mmhg")
        return self


class PhysicalExam(_Model):
    """Examination findings: vital signs and one text per body system examined."""

    vital_signs: VitalSigns = Field(default_factory=VitalSigns)
    findings: dict[ExamSystem, Text] = Field(default_factory=dict,
                                             description="Findings by system.")


class Case(_Model):
    """One consultation case (see ``scenarios/clinic/cases/README.md`` for every field)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=100,
                    description="Unique in a library: lower case, digits, _ . -")
    specialty: Annotated[str, AfterValidator(_specialty)]
    difficulty: Literal["easy", "medium", "hard"] | None = Field(
        description="How hard the diagnosis is; None for imported cases that do not say.")
    objective: Text = Field(description="The doctor's task, as the doctor is told it.")
    patient: PatientActor
    examination: PhysicalExam = Field(default_factory=PhysicalExam)
    tests: dict[TestName, TestResult] = Field(
        default_factory=dict, description="Results by canonical test name; a test not "
                                          "listed is normal.")
    case_tests: dict[CaseTestName, TestResult] = Field(
        default_factory=dict, description="Tests outside the vocabulary, by the case's own "
                                          "name (imported cases).")
    diagnosis: Text = Field(description="The correct diagnosis.")
    synonyms: list[Text] = Field(default_factory=list,
                                 description="Other acceptable names of the diagnosis.")
    differential: list[Text] = Field(default_factory=list,
                                     description="Other plausible diagnoses, most plausible "
                                                 "first; none of them matches the diagnosis.")
    source: Text = Field(LIBRARY_SOURCE, description="Where the case comes from.")

    @model_validator(mode="after")
    def _names_consistent(self) -> Case:
        problems = []
        for name in self.differential:
            if names_match(name, [self.diagnosis, *self.synonyms]):
                problems.append(f"differential entry {name!r} matches the diagnosis")
        seen: dict[str, str] = {}
        for name in self.case_tests:
            other = seen.setdefault(key_of_test(name), name)
            if other != name:
                problems.append(f"case_tests {other!r} and {name!r} are one test")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def symptom_keys(self) -> list[str]:
        """The patient's symptom keys (``patient.symptom_keys``)."""
        return list(self.patient.symptom_keys)

    def abnormal_tests(self) -> list[str]:
        """Names of the tests with an abnormal result (vocabulary tests, then case tests)."""
        return [name for name, r in self._all_tests() if r.abnormal]

    def decisive_tests(self) -> list[str]:
        """Names of the tests marked decisive: the tests a doctor needs."""
        return [name for name, r in self._all_tests() if r.decisive]

    def _all_tests(self) -> Iterator[tuple[str, TestResult]]:
        yield from self.tests.items()
        yield from self.case_tests.items()


class TestOutcome(NamedTuple):
    """What a test ordered for a case returns."""

    __test__ = False  # not a pytest test class

    name: str | None
    """The canonical name; the case's own name for a case test; None for an unknown test."""
    result: str
    abnormal: bool


def result_of(case: Case, test_name: str) -> TestOutcome:
    """The result of ordering ``test_name`` for ``case``.

    A vocabulary test the case lists returns its result; a vocabulary test the case does not
    list returns ``NORMAL_RESULT`` ("normal"), not abnormal; a test of the case's own
    ``case_tests`` returns its result under the case's name for it; a test that neither
    the vocabulary nor the case knows returns name None, "normal", not abnormal, so that the
    caller can count it.

    Args:
        case: the case.
        test_name: the test as ordered, in free text ("EKG", "Chest X-ray", "ecg").

    Returns:
        ``TestOutcome(name, result, abnormal)``.
    """
    canonical = normalise_test(test_name)
    if canonical is not None:
        listed = case.tests.get(canonical)
        if listed is None:
            return TestOutcome(canonical, NORMAL_RESULT, False)
        return TestOutcome(canonical, listed.result, listed.abnormal)
    key = key_of_test(test_name)
    if key:
        for name, listed in case.case_tests.items():
            if key_of_test(name) == key:
                return TestOutcome(name, listed.result, listed.abnormal)
    return TestOutcome(None, NORMAL_RESULT, False)


class CaseError(ValueError):
    """Case files that break the schema or the library rules; ``problems`` lists each
    problem as ``"<file>[:<line>]: case '<id>': <field>: <message>"``."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the case files:"
        super().__init__("\n  - ".join([head, *self.problems]))


class CaseLibrary(Sequence[Case]):
    """Cases in a fixed order with unique ids: ``len``, iteration, ``library[i]``,
    ``library.get(id)``; ``filter`` returns a library."""

    def __init__(self, cases: Iterable[Case]):
        self._cases = tuple(cases)
        self._by_id = {c.id: c for c in self._cases}
        if len(self._by_id) != len(self._cases):
            repeated = sorted(i for i, n in Counter(c.id for c in self._cases).items() if n > 1)
            raise CaseError([f"case id {i!r} is used more than once" for i in repeated])

    def __len__(self) -> int:
        return len(self._cases)

    @overload
    def __getitem__(self, index: int) -> Case: ...

    @overload
    def __getitem__(self, index: slice) -> CaseLibrary: ...

    def __getitem__(self, index: int | slice) -> Case | CaseLibrary:
        if isinstance(index, slice):
            return CaseLibrary(self._cases[index])
        return self._cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def __contains__(self, item: object) -> bool:
        """``"case_id" in library`` or ``case in library``."""
        return item in self._by_id if isinstance(item, str) else item in self._cases

    def __repr__(self) -> str:
        return f"CaseLibrary({len(self)} cases, {len(self.specialties())} specialties)"

    @property
    def ids(self) -> list[str]:
        """The case ids, in order."""
        return [c.id for c in self._cases]

    def get(self, case_id: str) -> Case:
        """The case with this id (KeyError naming it when there is none)."""
        try:
            return self._by_id[case_id]
        except KeyError:
            raise KeyError(f"no case {case_id!r} in the library") from None

    def specialties(self) -> dict[str, int]:
        """Number of cases per specialty, in order of first appearance."""
        return dict(Counter(c.specialty for c in self._cases))

    def diagnoses(self) -> list[str]:
        """The distinct correct diagnoses, in order of first appearance."""
        return list(dict.fromkeys(c.diagnosis for c in self._cases))

    def filter(self, *, specialty: str | Iterable[str] | None = None,
               difficulty: str | Iterable[str] | None = None) -> CaseLibrary:
        """The cases of these specialties and difficulties (None: any)."""
        def wanted(value: str | None, allowed: str | Iterable[str] | None) -> bool:
            if allowed is None:
                return True
            return value == allowed if isinstance(allowed, str) else value in set(allowed)
        return CaseLibrary(c for c in self._cases
                           if wanted(c.specialty, specialty) and wanted(c.difficulty, difficulty))


def library_problems(case: Case) -> list[str]:
    """What a case written for a library lacks beyond the schema: every vital sign, at
    least one symptom key, and at least one abnormal decisive test (imported cases are
    exempt: their sources do not say which tests decide)."""
    problems = []
    vitals = case.examination.vital_signs
    missing = [name for name in VitalSigns.model_fields if getattr(vitals, name) is None]
    if missing:
        problems.append(f"examination.vital_signs: missing {', '.join(missing)}")
    if case.difficulty is None:
        problems.append("difficulty: a library case says how hard it is")
    if not case.patient.symptom_keys:
        problems.append("patient.symptom_keys: a library case lists at least one symptom key")
    if not any(r.abnormal and r.decisive for _, r in case._all_tests()):
        problems.append("tests: no test is both abnormal and decisive (mark the result that "
                        "establishes the diagnosis with \"decisive\": true)")
    return problems


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "(the case)"


def validation_problems(error: ValidationError) -> list[str]:
    """Each error of a pydantic validation as ``"<field location>: <message>"``."""
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{_where(item['loc'])}: {message}")
    return problems


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, raw record) of every case in a file; where is ``file`` or ``file:line``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"{path}:{number}", _parse(line, f"{path}:{number}")
        return
    data = _parse(text, str(path))
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"{path}[{i}]", item
    else:
        yield str(path), data


class _Unreadable(Exception):
    pass


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}") from None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl")
                      and p.is_file())
    return [path]


def load_cases(path: str | Path) -> CaseLibrary:
    """Read case files into a library.

    Args:
        path: a ``.json`` file (one case, or a list of cases), a ``.jsonl`` file (one case
            per line), or a folder searched recursively for both, read in sorted order.

    Returns:
        The library, cases in file order.

    Raises:
        CaseError: listing every problem found in every file (invalid JSON, schema errors
            with the field's location, library rules, repeated ids), each naming the file
            (and line), the case id and the field.
        FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no case file or folder at {path}")
    cases: list[Case] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for file in _files(path):
        try:
            records = list(_records(file))
        except _Unreadable as exc:
            problems.append(str(exc))
            continue
        for where, raw in records:
            case_id = raw.get("id", "<no id>") if isinstance(raw, dict) else "<not an object>"
            prefix = f"{where}: case {case_id!r}"
            repeated = False
            if isinstance(case_id, str) and not case_id.startswith("<"):
                other = first_seen.setdefault(case_id, where)
                repeated = other != where
                if repeated:
                    problems.append(f"{prefix}: id: already used by the case in {other}")
            try:
                case = Case.model_validate(raw)
            except ValidationError as exc:
                problems += [f"{prefix}: {p}" for p in validation_problems(exc)]
                continue
            if case.source == LIBRARY_SOURCE:
                problems += [f"{prefix}: {p}" for p in library_problems(case)]
            if not repeated:
                cases.append(case)
    if problems:
        raise CaseError(problems)
    return CaseLibrary(cases)


@cache
def default_library() -> CaseLibrary:
    """The case library shipped with Populace (read once per process)."""
    return load_cases(CASES_DIR)
