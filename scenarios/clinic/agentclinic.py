"""Importing AgentClinic-format case files that users bring.

Core objects:
    import_agentclinic: read an AgentClinic-format JSONL file (one ``OSCE_Examination``
        object per line) into cases of the clinic's schema.
    ImportedCases: the list of cases it returns, with its ``report``.
    ImportReport: what the import could not map, counted: tests kept as case-specific
        tests, symptoms without a key, demographics, vital signs and examination sections it
        could not read, fields the file left out.

What is mapped, and how:

- ``Objective_for_Doctor`` -> ``objective``; ``Correct_Diagnosis`` -> ``diagnosis`` (no
  synonyms or differential: the format has none; the global synonym table still applies).
- ``Patient_Actor``: ``Demographics`` ("45-year-old male") -> age and sex, the text kept as
  ``description``; ``History``, ``Primary_Symptom`` and ``Secondary_Symptoms`` (flat or
  under ``Symptoms``), ``Past_Medical_History``, ``Social_History``, ``Review_of_Systems``
  and, when present, ``Family_History``, ``Medications`` and ``Allergies``. Symptom keys are
  found in the primary and secondary symptoms (``find_symptoms``); a symptom in which no
  key is found is counted.
- ``Physical_Examination_Findings``: ``Vital_Signs`` are read into numbers (Celsius or
  Fahrenheit temperature, "120/80" blood pressure, heart and respiratory rates, oxygen
  saturation); other sections map to examination systems by name ("Cardiovascular_
  Examination" -> ``cardiovascular``); what does not map goes to ``other``, counted.
- ``Test_Results``: nested dicts are walked; a key the test vocabulary knows becomes that
  test (its whole subtree is the result text); group keys ("Blood_Tests", "Imaging", ...)
  are walked through; any other test is kept as a case-specific test under its own name,
  counted. The source does not flag abnormal results: a result reads as normal when it
  begins with "normal", "negative", "unremarkable", "within normal limits", "no
  abnormality" or the like and names no abnormal finding; every other result is flagged
  abnormal. No test is marked decisive.
- Every imported case gets specialty ``unspecified``, difficulty None, an id
  ``<file stem>-<line>`` and ``source`` ``agentclinic:<file name>:<line>``. The library
  rules (all vital signs, a decisive abnormal test) do not apply to imported cases.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .cases import Case, CaseError, validation_problems
from .vocabulary import TEST_VOCABULARY, find_symptoms, key_of_test, normalise_test


@dataclass
class ImportReport:
    """What an import mapped and what it could not, counted.

    Attributes:
        source: the file read.
        cases: cases imported.
        tests_mapped: test results mapped to the vocabulary.
        case_specific_tests: names of tests kept as case-specific tests -> count.
        merged_tests: results merged into a test already read for the same case (two
            source keys naming one vocabulary test, such as "Troponin I" and "Troponin T").
        unmapped_symptoms: symptom texts in which no symptom key was found -> count.
        unparsed: fields read only partly or not at all -> count: ``demographics.age``,
            ``demographics.sex``, ``vital_signs.<key>``, ``exam.<section>``, ``missing.<field>``.
    """

    source: str
    cases: int = 0
    tests_mapped: int = 0
    case_specific_tests: Counter[str] = field(default_factory=Counter)
    merged_tests: int = 0
    unmapped_symptoms: Counter[str] = field(default_factory=Counter)
    unparsed: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """The report in a few lines of text."""
        lines = [f"{self.source}: {self.cases} cases imported; "
                 f"{self.tests_mapped} test results mapped to the vocabulary, "
                 f"{sum(self.case_specific_tests.values())} kept as case-specific tests "
                 f"({len(self.case_specific_tests)} names), {self.merged_tests} merged; "
                 f"{sum(self.unmapped_symptoms.values())} symptoms without a key"]
        if self.case_specific_tests:
            names = ", ".join(f"{n} ({c})" for n, c in self.case_specific_tests.most_common(10))
            lines.append(f"  case-specific tests: {names}")
        if self.unparsed:
            items = ", ".join(f"{n} ({c})" for n, c in sorted(self.unparsed.items()))
            lines.append(f"  not read: {items}")
        return "\n".join(lines)


class ImportedCases(list[Case]):
    """The cases of an import, in file order, with its ``report`` (an ``ImportReport``)."""

    def __init__(self, cases: list[Case], report: ImportReport):
        super().__init__(cases)
        self.report = report


# -- reading loosely named JSON ---------------------------------------------------------------


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _get(obj: Any, *names: str) -> Any:
    """The value of the first of ``names`` in a dict, comparing keys without case,
    underscores or spaces; None when absent."""
    if not isinstance(obj, dict):
        return None
    by_key = {_norm_key(k): v for k, v in obj.items()}
    for name in names:
        value = by_key.get(_norm_key(name))
        if value is not None:
            return value
    return None


def _label(key: str) -> str:
    return re.sub(r"[_\s]+", " ", key).strip()


_UNLABELLED = frozenset({"findings", "finding", "result", "results", "report", "impression",
                         "interpretation", "value", "description"})


def _text(value: Any) -> str:
    """Any JSON value as one line of text; nested keys become "Key: value" parts (generic
    keys such as "Findings" or "Result" are left out)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            text = _text(item)
            if text:
                parts.append(text if _norm_key(key) in _UNLABELLED else f"{_label(key)}: {text}")
        return "; ".join(parts)
    if isinstance(value, list):
        return "; ".join(t for t in (_text(v) for v in value) if t)
    return str(value).strip()


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [t for t in (_text(v) for v in value) if t]
    text = _text(value)
    return [text] if text else []


# -- demographics and vital signs -------------------------------------------------------------

_AGE = re.compile(r"(\d{1,3})\s*(?:-|\s)?\s*(?:years?|yrs?|y/?o|year-old)", re.I)
_MONTHS = re.compile(r"(\d{1,2})\s*(?:-|\s)?\s*months?", re.I)
_FEMALE = re.compile(r"\b(female|woman|girl|lady|f)\b", re.I)
_MALE = re.compile(r"\b(male|man|boy|gentleman|m)\b", re.I)


def _demographics(text: str, report: ImportReport) -> dict[str, Any]:
    age: int | None = None
    if match := _AGE.search(text):
        age = int(match.group(1))
    elif _MONTHS.search(text):
        age = 0
    if age is None or age > 120:
        age = None
        report.unparsed["demographics.age"] += 1
    female, male = bool(_FEMALE.search(text)), bool(_MALE.search(text))
    sex = "female" if female and not male else "male" if male and not female else None
    if sex is None:
        report.unparsed["demographics.sex"] += 1
    return {"age": age, "sex": sex, "description": text}


def _number(text: str) -> float | None:
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return float(match.group()) if match else None


def _vital(name: str, text: str) -> dict[str, float | int]:
    """The schema fields one vital-sign entry gives; empty when it is not understood."""
    key = _norm_key(name)
    if "temp" in key:
        celsius = re.search(r"(-?\d+(?:\.\d+)?)\s*°?\s*C\b", text)
        fahrenheit = re.search(r"(-?\d+(?:\.\d+)?)\s*°?\s*F\b", text)
        if celsius:
            value = float(celsius.group(1))
        elif fahrenheit:
            value = (float(fahrenheit.group(1)) - 32) * 5 / 9
        else:
            number = _number(text)
            if number is None:
                return {}
            value = number if number < 50 else (number - 32) * 5 / 9
        return {"temperature_c": round(value, 1)}
    if "bloodpressure" in key or key in ("bp", "nibp"):
        match = re.search(r"(\d{2,3})\s*/\s*(\d{2,3})", text)
        if not match:
            return {}
        return {"systolic_bp_mmhg": int(match.group(1)), "diastolic_bp_mmhg": int(match.group(2))}
    number = _number(text)
    if number is None:
        return {}
    if any(word in key for word in ("oxygen", "sat", "spo2", "o2", "oximetry")):
        return {"oxygen_saturation_pct": number}
    if "heart" in key or "pulse" in key or key == "hr":
        return {"heart_rate_bpm": round(number)}
    if "resp" in key or key == "rr":
        return {"respiratory_rate_per_min": round(number)}
    return {}


# -- examination ------------------------------------------------------------------------------

_EXAM_WORDS = re.compile(r"\b(examination|exam|findings|inspection|assessment|system)\b")
_SYSTEM_OF = {
    "general": "general", "general appearance": "general", "appearance": "general",
    "constitutional": "general",
    "heent": "heent", "head": "heent", "eyes": "heent", "eye": "heent", "ears": "heent",
    "ent": "heent", "throat": "heent", "head and neck": "heent", "ophthalmologic": "heent",
    "ophthalmic": "heent", "fundoscopic": "heent", "fundoscopy": "heent", "oral": "heent",
    "mouth": "heent", "oropharynx": "heent",
    "neck": "neck", "thyroid": "neck",
    "cardiovascular": "cardiovascular", "cardiac": "cardiovascular", "heart": "cardiovascular",
    "cardiopulmonary": "cardiovascular",
    "respiratory": "respiratory", "pulmonary": "respiratory", "lungs": "respiratory",
    "lung": "respiratory", "chest": "respiratory",
    "abdominal": "abdominal", "abdomen": "abdominal", "gastrointestinal": "abdominal",
    "genitourinary": "genitourinary", "pelvic": "genitourinary", "rectal": "genitourinary",
    "genital": "genitourinary", "gynecologic": "genitourinary", "gynaecological": "genitourinary",
    "urogenital": "genitourinary", "breast": "genitourinary",
    "musculoskeletal": "musculoskeletal", "joints": "musculoskeletal", "msk": "musculoskeletal",
    "spine": "musculoskeletal", "back": "musculoskeletal",
    "neurological": "neurological", "neurologic": "neurological", "neuro": "neurological",
    "nervous": "neurological", "cranial nerves": "neurological",
    "skin": "skin", "dermatological": "skin", "dermatologic": "skin", "integumentary": "skin",
    "extremities": "extremities", "extremity": "extremities", "limbs": "extremities",
    "peripheral vascular": "extremities",
    "lymph nodes": "lymph_nodes", "lymphatic": "lymph_nodes", "lymph node": "lymph_nodes",
    "psychiatric": "psychiatric", "mental status": "psychiatric", "mental state": "psychiatric",
}


def _system(section: str) -> str | None:
    words = _EXAM_WORDS.sub(" ", _label(section).lower())
    return _SYSTEM_OF.get(" ".join(words.split()))


def _examination(findings: Any, report: ImportReport) -> dict[str, Any]:
    vitals: dict[str, float | int] = {}
    by_system: dict[str, list[str]] = {}
    if not isinstance(findings, dict):
        text = _text(findings)
        if text:
            by_system["other"] = [text]
        return {"vital_signs": vitals, "findings": {k: " ".join(v) for k, v in by_system.items()}}
    for section, value in findings.items():
        if _norm_key(section) in ("vitalsigns", "vitals"):
            for name, entry in (value.items() if isinstance(value, dict) else []):
                got = _vital(name, _text(entry))
                if got:
                    vitals.update(got)
                else:
                    report.unparsed[f"vital_signs.{_label(name)}"] += 1
                    by_system.setdefault("general", []).append(f"{_label(name)}: {_text(entry)}.")
            continue
        text = _text(value)
        if not text:
            continue
        system = _system(section)
        if system is None:
            report.unparsed[f"exam.{_label(section)}"] += 1
            system, text = "other", f"{_label(section)}: {text}"
        by_system.setdefault(system, []).append(text)
    return {"vital_signs": vitals, "findings": {k: " ".join(v) for k, v in by_system.items()}}


# -- test results -----------------------------------------------------------------------------

_GROUPS = frozenset(_norm_key(g) for g in (
    "blood tests", "blood work", "bloodwork", "blood", "laboratory", "laboratory tests",
    "laboratory results", "labs", "lab tests", "lab results", "imaging", "imaging studies",
    "imaging results", "radiology", "other tests", "additional tests", "urine tests",
    "special tests", "diagnostic tests", "diagnostic studies", "investigations",
    "microbiology", "serology", "cardiac tests", "cardiac studies", "pathology",
    "test results", "results", "tests", "studies", "procedures", "other",
))

_NORMAL_START = re.compile(
    r"^\s*(normal|negative|unremarkable|within normal limits|wnl|no abnormalit|"
    r"no acute|no evidence|not detected|non-reactive|nonreactive|no growth|clear|none)", re.I)
_ABNORMAL_CUE = re.compile(
    r"\b(elevat|raised|high|low|decreas|increas|positive|abnormal|present|reduced|deficien|"
    r"mass|lesion|effusion|consolidat|fractur|enlarg|dilat|thicken|infiltrat|opacit|"
    r"stenos|occlu|thromb|obstruct|hemorrhag|haemorrhag|bleed|ulcer|nodul|tumou?r|"
    r"detected|growth of|grew|isolated|prolong|inversion|depression|blocked|absent|atroph|"
    r"infarct|edema|oedema)", re.I)
_NEGATED = re.compile(r"\b(no|not|without|negative for)\b[^,;.]*", re.I)


def _looks_normal(text: str) -> bool:
    """Whether one result text reads as normal (see the module docstring)."""
    if not _NORMAL_START.match(text):
        return False
    rest = _NEGATED.sub(" ", _NORMAL_START.sub("", text, count=1))  # "normal, no thymoma"
    return not _ABNORMAL_CUE.search(rest)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaves(v)]
    if isinstance(value, list):
        return [t for v in value for t in _leaves(v)]
    text = _text(value)
    return [text] if text else []


def _abnormal(value: Any) -> bool:
    """A result is abnormal unless each of its parts reads as normal."""
    return not all(_looks_normal(t) for t in _leaves(value))


def _maps_below(value: Any) -> bool:
    """Whether any key below ``value`` names a vocabulary test."""
    if not isinstance(value, dict):
        return False
    return any(normalise_test(_label(k)) is not None or _maps_below(v)
               for k, v in value.items())


def _walk_tests(results: Any) -> Iterator[tuple[str, str | None, Any]]:
    """(source name, canonical name or None, result value) of every test under a
    ``Test_Results`` value: group keys are walked through, vocabulary tests and leaves
    are tests."""
    if not isinstance(results, dict):
        yield "Other result", None, results
        return
    for key, value in results.items():
        name = _label(key)
        if isinstance(value, dict) and _norm_key(key) in _GROUPS:
            yield from _walk_tests(value)
            continue
        canonical = normalise_test(name)
        if canonical is not None:
            yield name, canonical, value
        elif _maps_below(value):
            yield from _walk_tests(value)
        else:
            yield name, None, value


def _own_name(name: str, canonical: str) -> bool:
    """Whether ``name`` is the test's own name or label ("CBC", "Complete blood count"), not
    one of its results or parts ("Hemoglobin" filed under the CBC)."""
    info = TEST_VOCABULARY[canonical]
    return key_of_test(name) in {key_of_test(info.name.replace("_", " ")),
                                 key_of_test(info.label)}


def _tests(results: Any, report: ImportReport) -> tuple[dict[str, Any], dict[str, Any]]:
    tests: dict[str, dict[str, Any]] = {}
    case_tests: dict[str, dict[str, Any]] = {}
    case_names: dict[str, str] = {}
    sources: dict[tuple[int, str], str | None] = {}  # the source name of a result not merged yet
    for number, (source_name, canonical, value) in enumerate(_walk_tests(results), 1):
        text = _text(value)
        if not text:
            continue
        name = source_name if key_of_test(source_name) else f"Other result {number}"
        entry = {"result": text, "abnormal": _abnormal(value), "decisive": False}
        named = False  # whether the entry's result already names its source
        if canonical is not None:
            report.tests_mapped += 1
            target, key = tests, canonical
            if not _own_name(name, canonical):  # "Hemoglobin: 13.5 g/dL" under the CBC
                entry["result"], named = f"{name}: {text}", True
        else:
            report.case_specific_tests[name] += 1
            key = case_names.setdefault(key_of_test(name), name)
            target = case_tests
        if key in target:
            report.merged_tests += 1
            old = target[key]
            first = sources[(id(target), key)]
            if first is not None:  # the first merge names the first result too
                old["result"] = f"{first}: {old['result']}"
                sources[(id(target), key)] = None
            old["result"] = f"{old['result']}; {name}: {text}"
            old["abnormal"] = old["abnormal"] or entry["abnormal"]
        else:
            target[key] = entry
            sources[(id(target), key)] = None if named else name
    return tests, case_tests


# -- the importer -----------------------------------------------------------------------------


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_.\-]+", "-", text.lower()).strip("-._")
    return slug or "agentclinic"


def _required(value: str, name: str, report: ImportReport, default: str) -> str:
    if value:
        return value
    report.unparsed[f"missing.{name}"] += 1
    return default


def _case_record(osce: dict[str, Any], case_id: str, source: str,
                 report: ImportReport) -> dict[str, Any]:
    actor = _get(osce, "Patient_Actor") or {}
    symptoms = _get(actor, "Symptoms")
    primary = _text(_get(symptoms, "Primary_Symptom") or _get(actor, "Primary_Symptom"))
    secondary = _texts(_get(symptoms, "Secondary_Symptoms")
                       or _get(actor, "Secondary_Symptoms"))
    keys: list[str] = []
    for text in [primary, *secondary]:
        found = find_symptoms(text) if text else []
        if text and not found:
            report.unmapped_symptoms[text] += 1
        keys += [k for k in found if k not in keys]
    diagnosis = _get(osce, "Correct_Diagnosis", "Diagnosis")
    names = _texts(diagnosis)
    tests, case_tests = _tests(_get(osce, "Test_Results") or {}, report)
    return {
        "id": case_id,
        "specialty": "unspecified",
        "difficulty": None,
        "objective": _required(_text(_get(osce, "Objective_for_Doctor")), "objective", report,
                               "Assess the patient and make a diagnosis."),
        "patient": {
            "demographics": _demographics(_text(_get(actor, "Demographics")), report),
            "history": _required(_text(_get(actor, "History")), "history", report,
                                 "Not documented."),
            "primary_symptom": _required(primary, "primary_symptom", report, "Not documented."),
            "secondary_symptoms": secondary,
            "past_medical_history": _text(_get(actor, "Past_Medical_History")),
            "social_history": _text(_get(actor, "Social_History")),
            "family_history": _text(_get(actor, "Family_History")),
            "review_of_systems": _text(_get(actor, "Review_of_Systems")),
            "medications": _texts(_get(actor, "Medications", "Current_Medications")),
            "allergies": _texts(_get(actor, "Allergies")),
            "symptom_keys": keys,
        },
        "examination": _examination(_get(osce, "Physical_Examination_Findings"), report),
        "tests": tests,
        "case_tests": case_tests,
        "diagnosis": names[0] if names else "",
        "synonyms": names[1:],
        "differential": [],
        "source": source,
    }


def import_agentclinic(path: str | Path) -> ImportedCases:
    """Read an AgentClinic-format JSONL file into cases.

    Args:
        path: a JSONL file, one object per line: ``{"OSCE_Examination": {...}}`` (or the
            ``OSCE_Examination`` object itself).

    Returns:
        The cases (``ImportedCases``, a list) with ``.report``: an ``ImportReport`` that
        counts what could not be mapped.

    Raises:
        CaseError: listing every line that is not JSON, has no ``Patient_Actor`` or no
            ``Correct_Diagnosis``, or does not give a valid case (with the field).
        FileNotFoundError: when the file does not exist.
    """
    path = Path(path)
    report = ImportReport(source=str(path))
    cases: list[Case] = []
    problems: list[str] = []
    stem = _slug(path.stem)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where, case_id = f"{path}:{number}", f"{stem}-{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        osce = _get(data, "OSCE_Examination") or data
        if not isinstance(osce, dict) or _get(osce, "Patient_Actor") is None:
            problems.append(f"{where}: case {case_id!r}: no OSCE_Examination with a "
                            f"Patient_Actor")
            continue
        if not _texts(_get(osce, "Correct_Diagnosis", "Diagnosis")):
            problems.append(f"{where}: case {case_id!r}: Correct_Diagnosis: missing")
            continue
        record = _case_record(osce, case_id, f"agentclinic:{path.name}:{number}", report)
        try:
            cases.append(Case.model_validate(record))
        except ValidationError as exc:
            problems += [f"{where}: case {case_id!r}: {p}" for p in validation_problems(exc)]
    if problems:
        raise CaseError(problems)
    report.cases = len(cases)
    return ImportedCases(cases, report)
