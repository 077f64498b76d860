"""The clinic's configuration: its ``scenario:`` section and its rule doctors' params.

Core objects:
    ClinicConfig: the ``scenario:`` keys: the case library and its mix, who the doctors are
        (count, specialties, capacity, bias), when patients arrive, the queue's rules, the
        consultation's turn limit, how patients present, and the judge.
    DoctorRuleParams: ``policy.params`` of the rule (Bayesian) doctor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from populace.simulator.paths import MissingPathError, existing_path
from populace.simulator.population.distributions import possible_values

from .agentclinic import import_agentclinic
from .cases import CaseError, CaseLibrary, default_library, load_cases
from .hospital import ED_HOURLY, specialty_code
from .persona import LANGUAGE_LEVELS, PERSONALITIES, RECALL_LEVELS

Hourly = list[float]


class ClinicConfig(BaseModel):
    """A hospital: patients (each with a case of the library, never told its diagnosis)
    arrive over simulated time, are triaged and queue for doctors, who question them, examine
    them, order tests (results come after the test's turnaround) and diagnose within a turn
    limit; a judge scores each diagnosis against the case's.

    Agents ``0 .. doctors-1`` are doctors and the rest patients, unless the population has the
    ``role_attribute`` column (values ``doctor`` / ``patient``). One step is one turn of every
    consultation in progress: the clock's step (``clock.step``) is how long a turn lasts.
    """

    model_config = ConfigDict(extra="forbid")

    cases: str | None = Field(
        None, description="case file or folder (JSON, one case or a list; JSON lines; see "
        "scenarios/clinic/cases/README.md), relative to the experiment file; unset: the 65 "
        "synthetic cases shipped with Populace")
    agentclinic: str | None = Field(
        None, description="an AgentClinic-format JSONL file (OSCE_Examination records) to "
        "import as the case library instead, relative to the experiment file")
    specialties: list[str] | None = Field(
        None, min_length=1, description="keep only the cases of these specialties")
    mix: dict[str, float] | None = Field(
        None, description="relative weight of each specialty among patients' cases (a "
        "specialty's weight is shared equally by its cases); unset: every case equally likely")
    case_attribute: str = Field(
        "case", description="population column naming a patient's case id; patients without "
        "it get a case drawn by `mix`")
    role_attribute: str = Field("role", description="population column with doctor/patient")
    doctors: int = Field(1, ge=1, le=100_000, description="number of doctors (the first agent "
                         "ids) when the population has no role attribute")
    specialists: dict[str, int] = Field(
        default_factory=dict, description="how many of the doctors are specialists of each "
        "specialty (the first doctors, in the order given); the rest are general doctors. A "
        "population column `specialty` overrides it")
    capacity: int = Field(1, ge=1, le=100, description="consultations a doctor holds at once "
                          "(a doctor talks in one of them per turn; the others wait for test "
                          "results)")
    confirmation: float = Field(
        0.0, ge=0, le=1, description="doctors' confirmation bias (0: none, 1: ignores all "
        "evidence against its leading diagnosis); the population column named by "
        "confirmation_attribute overrides it per doctor, and events may set it (variable "
        "`confirmation`)")
    confirmation_attribute: str | None = Field(
        "confirmation", description="population column with each doctor's confirmation bias "
        "(missing values take `confirmation`); null: every doctor takes `confirmation`")
    max_turns: int = Field(20, ge=1, le=200, description="turns a doctor has to diagnose "
                           "(AgentClinic: 20); a consultation that reaches it without a "
                           "diagnosis ends as a failure")
    arrival: Literal["poisson", "start"] = Field(
        "poisson", description="poisson: each patient's arrival time is drawn from the hourly "
        "profile over arrival_hours (a Poisson process with that profile, given the number "
        "of patients); start: every patient is there at step 0")
    hourly: Hourly = Field(default_factory=lambda: list(ED_HOURLY), min_length=24,
                           max_length=24, description="relative arrival rate of each hour of "
                           "the day, 0-23 (default: an illustrative emergency department)")
    arrival_hours: float = Field(24.0, gt=0, le=24 * 365, description="patients arrive within "
                                 "this many hours of the start")
    patience_min: float = Field(360.0, gt=0, description="minutes a waiting patient stays "
                                "before leaving unseen")
    fallback_after_min: float = Field(60.0, ge=0, description="minutes after which a patient "
                                      "waiting for a specialist may see any free doctor")
    symptom_presence: float = Field(
        0.85, ge=0, le=1, description="chance that a patient has each symptom its case keys "
        "beyond the chief complaint (patients of one case differ)")
    test_sensitivity: float = Field(
        0.95, ge=0, le=1, description="chance that a test the case lists as abnormal comes "
        "back abnormal for a given patient")
    persona_defaults: dict[str, str] = Field(
        default_factory=lambda: {"personality": "plain", "language": "advanced",
                                 "recall": "high", "dazed": "clear"},
        description="PatientSim persona of patients whose population lacks a column "
        "personality, language, recall or dazed")
    patients: Literal["rule", "llm"] = Field(
        "rule", description="rule: patients answer from their case and persona by rule; llm: "
        "the model of the llm: section plays each patient in its PatientSim persona (its "
        "replies, and its confidence in the doctor at the end)")
    judge: Literal["rule", "llm"] = Field(
        "rule", description="rule: normalised string match with the case's synonyms; llm: "
        "the model of the llm: section decides where the rule says no")
    llm_protocol: Literal["structured", "agentclinic"] = Field(
        "structured", description="how language-model doctors answer: structured (a JSON "
        "decision: action and its argument) or agentclinic (free text with REQUEST TEST: / "
        "DIAGNOSIS READY: tags, parsed as AgentClinic does, mixed answers counted)")
    memory: bool = Field(
        False, description="rule doctors remember each consultation they end (the correct "
        "diagnosis, told afterwards, and the findings they asked) and learn from it, as in "
        "MedAgentSim")
    memory_weight: float = Field(5.0, gt=0, le=1e6, description="how many remembered cases "
                                 "of a diagnosis the textbook (the library's table) is worth")
    textbook_share: float = Field(
        1.0, ge=0, le=1, description="share of the library's diagnoses each doctor learned "
        "before the run (drawn per doctor); the others it can only learn by memory")
    knowledge_prior: float = Field(
        0.1, gt=0, le=10, description="Beta(a, a) pseudo-count of the rule doctors' "
        "knowledge table (larger: less sure of any one finding)")

    @field_validator("specialists", "mix", "specialties")
    @classmethod
    def _known_specialties(cls, value: dict[str, float] | list[str] | None
                           ) -> dict[str, float] | list[str] | None:
        for name in value or ():  # a dict's keys, or a list's names
            specialty_code(name)  # raises ValueError naming the specialties
        return value

    @field_validator("persona_defaults")
    @classmethod
    def _persona(cls, value: dict[str, str]) -> dict[str, str]:
        levels = {"personality": PERSONALITIES, "language": LANGUAGE_LEVELS,
                  "recall": RECALL_LEVELS, "dazed": ("clear", "dazed")}
        for key, level in value.items():
            if key not in levels:
                raise ValueError(f"unknown persona dimension {key!r}; one of "
                                 f"{', '.join(levels)}")
            if level not in levels[key]:
                raise ValueError(f"{key}: {level!r} is not one of {', '.join(levels[key])}")
        return {**{"personality": "plain", "language": "advanced", "recall": "high",
                   "dazed": "clear"}, **value}

    @field_validator("hourly")
    @classmethod
    def _hourly(cls, value: Hourly) -> Hourly:
        if any(v < 0 for v in value) or not sum(value) > 0:
            raise ValueError("hourly: 24 non-negative rates, not all zero")
        return value

    @model_validator(mode="after")
    def _one_library(self) -> Self:
        if self.cases is not None and self.agentclinic is not None:
            raise ValueError("give cases or agentclinic, not both")
        if sum(self.specialists.values()) > self.doctors:
            raise ValueError(f"specialists: {sum(self.specialists.values())} specialists but "
                             f"only {self.doctors} doctors")
        if any(n < 0 for n in self.specialists.values()):
            raise ValueError("specialists: counts must be >= 0")
        return self

    def library(self, base_dir: Path) -> CaseLibrary:
        """The case library this config names, filtered to ``specialties``.

        Raises:
            CaseError: a case file breaks the schema (each problem names the file, the case
                and the field).
            MissingPathError: no file or folder at ``cases`` / ``agentclinic``.
            ValueError: ``specialties`` keeps no case, or ``mix`` names a specialty the
                library lacks.
        """
        if self.agentclinic is not None:
            library = CaseLibrary(import_agentclinic(existing_path(self.agentclinic, base_dir)))
        elif self.cases is not None:
            path = existing_path(self.cases, base_dir, "folder") if (
                Path(base_dir, self.cases).is_dir()) else existing_path(self.cases, base_dir)
            library = load_cases(path)
        else:
            library = default_library()
        if self.specialties is not None:
            library = library.filter(specialty=self.specialties)
            if not len(library):
                raise ValueError(f"specialties: no case of {', '.join(self.specialties)} in "
                                 "the library")
        missing = sorted(set(self.mix or {}) - set(library.specialties()))
        if missing:
            raise ValueError(f"mix: no case of {', '.join(missing)} in the library (it has "
                             f"{', '.join(library.specialties())})")
        return library

    def _unknown_cases(self, experiment: Any,
                       library: CaseLibrary) -> list[tuple[tuple[Any, ...], str]]:
        """Case ids a generated ``case_attribute`` can draw that the library lacks."""
        spec = experiment.population.attributes.get(self.case_attribute)
        values = possible_values(spec) if spec is not None else None
        known = set(library.ids)
        unknown = sorted(str(v) for v in values or () if isinstance(v, str) and v not in known)
        if not unknown:
            return []
        return [(("population", "attributes", self.case_attribute),
                 f"no case {', '.join(repr(v) for v in unknown[:5])} in the case library")]

    def check_experiment(self, experiment: Any,
                         base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
        """Problems of the whole experiment seen from the clinic (see config.py): the case
        library loads (every schema problem, naming the case and the field), there are
        patients beyond the doctors, and a language-model judge has a model."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        where = ("scenario", "agentclinic" if self.agentclinic is not None else "cases")
        try:
            library = self.library(base_dir)
            problems.extend(self._unknown_cases(experiment, library))
        except CaseError as err:
            problems.extend((where, problem) for problem in err.problems)
        except MissingPathError as err:
            problems.append((where, str(err)))
        except ValueError as err:
            problems.append((("scenario",), str(err)))
        if self.patients == "llm" and experiment.llm is None:
            problems.append((("scenario", "patients"), "patients: llm needs an llm: section "
                             "(the model that plays the patients)"))
        if self.judge == "llm" and experiment.llm is None:
            problems.append((("scenario", "judge"), "judge: llm needs an llm: section (the "
                             "model that judges diagnoses)"))
        n = experiment.population.size
        has_roles = self.role_attribute in experiment.population.attributes or (
            experiment.population.file is not None)
        if n is not None and not has_roles and self.doctors >= n:
            problems.append((("scenario", "doctors"), f"{self.doctors} doctors leave no patient "
                             f"among the {n} agents; lower doctors or raise population.size"))
        return problems


class DoctorRuleParams(BaseModel):
    """The rule doctor (``rules``): a differential over the knowledge table, updated by
    Bayes' rule, asking the most informative question or test next."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(0.9, gt=0, le=1, description="diagnose once the leading "
                              "diagnosis has this posterior probability")
    cost_weight: float = Field(0.002, ge=0, description="bits of information one unit of "
                               "test cost is worth giving up")
    min_gain: float = Field(0.02, ge=0, description="diagnose when no question or test is "
                            "expected to tell this many bits (less its cost's weight)")
    hour_weight: float = Field(0.05, ge=0, description="bits of information one hour of a "
                               "test's turnaround is worth giving up (the consultation waits "
                               "for the result)")
    confirm: bool = Field(True, description="before diagnosing (unless at the turn limit), "
                          "order the cheapest test that confirms the leading diagnosis if "
                          "none has been ordered (a diagnosis's confirming tests: the decisive "
                          "tests of its cases)")
