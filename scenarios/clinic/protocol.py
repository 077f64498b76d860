"""The doctor's side of a consultation: one action schema for rule and language-model doctors,
AgentClinic's free-text protocol on top of it, and the measurement agent's replies.

Core objects:
    DOCTOR_ACTIONS: the doctor's actions, in code order: ``do_nothing`` (a wasted turn),
        ``ask``, ``examine``, ``order_test``, ``diagnose``.
    DoctorTurn: one turn of a doctor, whoever decided it: the action and its arguments
        (question and the symptom keys it names, test, examination system, diagnosis and
        ranked differential) and the protocol ``problems`` met on the way.
    DoctorDecision: the pydantic model a structured-output language-model doctor answers;
        ``to_turn()`` makes it a ``DoctorTurn``.
    parse_doctor_text: an AgentClinic free-text answer to a ``DoctorTurn``.
    doctor_text, render_turn: a turn (and its answer) as AgentClinic-style dialogue.
    measurement_reply, examination_reply: what the measurement agent answers to a test order
        or an examination ("RESULTS: ...", "NORMAL READINGS" for what the case does not list).
    PROBLEMS: every protocol problem code and what it means.

The free-text protocol (AgentClinic's, with two documented extensions):

- ``DIAGNOSIS READY: <diagnosis>`` ends the consultation. The tag is found in any case when a
  colon or dash follows it, and without one when written in capitals; markdown (``**``,
  ``__``, backticks, headings), quotes, brackets and trailing punctuation around the name are
  dropped; so are leading hedges ("I think", "most likely", "maybe", "it is") and a trailing
  explanation (a second sentence, text after a dash or "because").
- ``REQUEST TEST: <name>`` orders one test; the name is mapped to the vocabulary with
  ``normalise_test``. A name the vocabulary does not know is kept as text (``request``),
  ``test`` is None and the problem ``unknown_test`` is counted: the measurement agent answers
  it with normal readings (AgentClinic's rule), unless an imported case lists it among its own
  tests. A test name that reads as an examination ("REQUEST TEST: cardiovascular exam") is an
  examination.
- Everything else is a question for the patient (``ask``), mapped to symptom keys with
  ``find_symptoms`` (the symptoms it names; negation is not understood).
- Extension: ``REQUEST EXAM: <system>`` examines one body system (an ``EXAM_SYSTEMS`` name or
  a plain word for it: "heart", "lungs", "abdomen"); an empty system or "physical
  examination" is the whole examination (``WHOLE_EXAMINATION``). AgentClinic's doctors get
  examination findings by asking the measurement agent; the tag makes the request explicit.
- Extension: ``DIFFERENTIAL: <a>; <b>; ...`` (or a numbered or bulleted list under it), with a
  diagnosis, gives a ranked differential for top-k accuracy.

Answers that do not keep to one move, and how they are resolved (each problem is listed in
``DoctorTurn.problems`` so that the scenario counts it):

- Several tests in one turn (``REQUEST TEST: CBC, chest X-ray`` or two tags): AgentClinic's
  measurement agent answers one request per turn, so the first is carried out, the others
  are kept in ``dropped`` and ``multiple_tests`` is counted. Names are split at commas,
  semicolons, "+", "&" and "and", except where the joined words name one test ("urea and
  electrolytes").
- A diagnosis together with a test or examination request, or with a question
  (``mixed_protocol``): the diagnosis wins, as in AgentClinic's loop, which looks for
  ``DIAGNOSIS READY`` before ``REQUEST TEST``; the consultation ends. Likewise a request wins
  over a question asked in the same turn (the patient does not hear it), and
  ``mixed_protocol`` is counted. A question is prose with a question mark; explanatory prose
  around a tag is not a problem.
- A hedged diagnosis naming alternatives ("maybe pneumonia or pulmonary embolism", "X vs Y",
  "X/Y"; ``hedged_diagnosis``): ``diagnosis`` keeps the whole answer, which the judge's rule
  (``diagnosis_matches``) refuses because it names two diseases, and the alternatives become
  the ranked differential, so that top-k accuracy still credits them. A single hedge ("most
  likely X") is not a problem: it is dropped.
- Explanations after a diagnosis are cut, not counted: after its first sentence ("Acute
  hepatitis A. Supportive care"; an initial such as "C. Difficile" opening the line is no
  sentence end), a semicolon, "because", "given", or a comma and a hedge or explanation word
  (", likely secondary to alcohol", ", due to dehydration", ", will start antibiotics"). For
  "X - Y" the judge reads the more specific side (the one with more words that is not a plan
  such as "need CT angiography"; the first on a tie) and ``DoctorTurn.diagnosis_text`` keeps
  the raw text, so that a judge can try both sides.
- A tag with nothing after it (``diagnosis_without_name``, ``test_without_name``): the tag is
  ignored; the rest of the answer decides the turn.
- An empty answer, or one with nothing left to act on: ``do_nothing``, a wasted turn
  (``empty`` when the answer had no text at all).

Priority, in short: a named diagnosis > the first test or examination request > a question >
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .cases import Case, result_of
from .diagnosis import normalise_diagnosis
from .vocabulary import (
    EXAM_SYSTEMS,
    TEST_VOCABULARY,
    find_symptoms,
    longest_phrases,
    normalise_test,
)

DoctorAction = Literal["do_nothing", "ask", "examine", "order_test", "diagnose"]
DOCTOR_ACTIONS: tuple[DoctorAction, ...] = get_args(DoctorAction)
"""The doctor's actions; a turn's ``code`` indexes this tuple (an ``ActionBatch``'s action)."""

WHOLE_EXAMINATION = "all"
"""The ``system`` of an examination of every system, vital signs included."""

ExamTarget = Literal["general", "heent", "neck", "cardiovascular", "respiratory", "abdominal",
                     "genitourinary", "musculoskeletal", "neurological", "skin", "extremities",
                     "lymph_nodes", "psychiatric", "other", "all"]
if get_args(ExamTarget) != (*EXAM_SYSTEMS, WHOLE_EXAMINATION):
    raise ImportError("protocol.ExamTarget is out of step with vocabulary.EXAM_SYSTEMS")

MAX_DIFFERENTIAL = 5
"""Entries of a turn's ranked differential at most, the diagnosis first (top-5 accuracy)."""
MAX_QUESTION = 500
"""Characters of a structured decision's question at most."""
MAX_NAME = 200
"""Characters of a structured decision's test, diagnosis or differential entry at most."""
MAX_REASONING = 600
"""Characters of a structured decision's reasoning at most."""

PROBLEMS: Mapping[str, str] = MappingProxyType({
    "empty": "the answer has no text: the turn is wasted (do_nothing)",
    "mixed_protocol": "the answer mixes moves (a diagnosis with a request or a question, or a "
                      "request with a question): the diagnosis wins, then the request",
    "multiple_diagnoses": "more than one DIAGNOSIS READY: the first is taken",
    "hedged_diagnosis": "the diagnosis names alternatives (X or Y): the judge refuses it; the "
                        "alternatives are the ranked differential",
    "diagnosis_without_name": "DIAGNOSIS READY with no diagnosis after it: ignored",
    "multiple_tests": "more than one test or examination requested: the first is carried "
                      "out, the others are in dropped",
    "test_without_name": "REQUEST TEST with nothing after it: ignored (REQUEST EXAM alone "
                         "is the whole examination)",
    "unknown_test": "the test carried out is not in the test vocabulary: kept as text, "
                    "answered as normal unless the case lists it among its own tests",
    "unknown_system": "the examination names no body system the protocol knows: answered "
                      "as normal readings",
    "long_differential": f"the differential has more than {MAX_DIFFERENTIAL} entries: the "
                         f"rest are dropped",
})
"""Every protocol problem code a turn may carry, in the order ``problems`` lists them."""

_PROBLEM_ORDER = {code: i for i, code in enumerate(PROBLEMS)}


def _problems(codes: Iterable[str]) -> tuple[str, ...]:
    unique = set(codes)
    unknown = unique - _PROBLEM_ORDER.keys()
    if unknown:
        raise ValueError(f"unknown protocol problem codes: {sorted(unknown)}")
    return tuple(sorted(unique, key=_PROBLEM_ORDER.__getitem__))


# -- examination systems ------------------------------------------------------------------

_SYSTEM_ALIASES: dict[str, tuple[str, ...]] = {
    "general": ("general", "general appearance", "appearance", "vital signs", "vitals",
                "vital sign", "pulse oximetry", "oximetry", "spo2", "sao2", "sats",
                "oxygen saturation", "o2 saturation", "o2 sats", "o2 sat", "saturation",
                "saturations", "blood pressure", "bp", "temperature", "temp", "heart rate",
                "pulse rate", "respiratory rate"),
    "heent": ("heent", "head", "eyes", "eye", "ears", "ear", "nose", "throat", "ent", "mouth",
              "oropharynx", "pharynx", "fundoscopy", "fundi", "fundus", "fundoscopic",
              "funduscopy", "funduscopic", "ophthalmoscopy", "ophthalmoscopic",
              "visual fields", "visual field", "visual acuity", "head eyes ears nose "
              "throat", "head eyes ears nose and throat", "otoscopy"),
    "neck": ("neck", "thyroid", "thyroid gland"),
    "cardiovascular": ("cardiovascular", "cardiac", "heart", "cvs", "cardio", "heart sounds",
                       "pulses"),
    "respiratory": ("respiratory", "chest", "lungs", "lung", "pulmonary", "resp",
                    "breath sounds", "chest and lungs"),
    "abdominal": ("abdominal", "abdomen", "abdo", "gastrointestinal", "gi", "belly",
                  "stomach", "rectal", "digital rectal"),
    "genitourinary": ("genitourinary", "gu", "genital", "genitals", "pelvic", "scrotal",
                      "scrotum", "testicular", "testes", "urological", "gynaecological",
                      "gynecological", "prostate"),
    "musculoskeletal": ("musculoskeletal", "msk", "joints", "joint", "spine", "back",
                        "muscles", "locomotor"),
    "neurological": ("neurological", "neuro", "neurologic", "nervous system", "cranial nerves",
                     "reflexes", "neurology", "gait"),
    "skin": ("skin", "dermatological", "dermatologic", "derm", "rash", "integumentary"),
    "extremities": ("extremities", "extremity", "legs", "leg", "limbs", "limb", "arms",
                    "feet", "calves", "calf", "lower limbs", "lower extremities", "peripheral"),
    "lymph_nodes": ("lymph nodes", "lymph node", "lymphatic", "lymph", "nodes",
                    "lymphadenopathy"),
    "psychiatric": ("psychiatric", "mental state", "mental status", "psych", "mood",
                    "cognitive", "cognition"),
    "other": ("other",),
}

_EXAM_FILLER = frozenset({
    "exam", "exams", "examination", "examinations", "examine", "physical", "full", "complete",
    "of", "the", "a", "an", "system", "systems", "finding", "findings", "please", "perform",
    "do", "auscultation", "auscultate", "palpation", "palpate", "inspection", "inspect",
    "percussion", "assessment", "all", "entire", "whole", "assess", "check", "focused", "focussed", "detailed",
    "thorough", "patient", "patients", "s",
})

_EXAM_WORDS = re.compile(r"\b(?:exam|examination|examine|auscultat\w*|palpat\w*|inspect\w*|"
                         r"percuss\w*|vital\s+signs?|vitals|physical|pulse\s+oximetry|oximetry|"
                         r"sp\s*o2|sao2|sats|(?:oxygen|o2)\s+sat\w*|blood\s+pressure|temperature|"
                         r"heart\s+rate|pulse\s+rate|respiratory\s+rate|fund[ou]scop\w*|"
                         r"ophthalmoscop\w*|visual\s+(?:fields?|acuity))\b", re.IGNORECASE)
"""Words that make a test request an examination: examining verbs, and the vital signs
(reported with ``general``) and eye examinations (``heent``) a doctor may order as tests."""


def _fold_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


_SYSTEM_INDEX: dict[tuple[str, ...], str] = {}
for _system, _aliases in _SYSTEM_ALIASES.items():
    for _alias in (_system.replace("_", " "), *_aliases):
        _SYSTEM_INDEX.setdefault(tuple(w for w in _fold_words(_alias) if w not in _EXAM_FILLER),
                                 _system)
_LONGEST_SYSTEM = max(len(k) for k in _SYSTEM_INDEX)


def systems_in(text: str) -> list[str]:
    """Every examination system a free text names, in order (longest phrases first), or
    ``[WHOLE_EXAMINATION]`` when it names none and says nothing but "physical examination"
    and the like.

    ``systems_in("cardiovascular exam") == ["cardiovascular"]``; ``systems_in("heart and
    lungs") == ["cardiovascular", "respiratory"]``; ``systems_in("full physical exam") ==
    ["all"]``; ``systems_in("tongue") == []``.
    """
    words = [w for w in _fold_words(text) if w not in _EXAM_FILLER]
    if not words:
        return [WHOLE_EXAMINATION]
    return longest_phrases(words, _SYSTEM_INDEX, _LONGEST_SYSTEM)


def normalise_system(text: str) -> str | None:
    """The examination system a free text names (the first, if several), ``"all"`` for the
    whole examination, or None when it names none the protocol knows."""
    found = systems_in(text)
    return found[0] if found else None


# -- the turn -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorTurn:
    """One doctor's turn, from a rule doctor, a structured decision or a free-text answer.

    Build one with ``DoctorTurn.ask``, ``examine``, ``order``, ``diagnose`` or
    ``nothing``; ``parse_doctor_text`` and ``DoctorDecision.to_turn`` use them.

    Attributes:
        action: one of ``DOCTOR_ACTIONS``.
        question: ``ask``: the text the patient hears.
        symptoms: ``ask``: the symptom keys the question names (``find_symptoms``).
        request: ``order_test`` / ``examine``: the test or system as the doctor named it.
        test: ``order_test``: the canonical test name; None when the vocabulary does not know
            it (``unknown_test``).
        system: ``examine``: an ``EXAM_SYSTEMS`` name or ``"all"``; None when unknown
            (``unknown_system``).
        diagnosis: ``diagnose``: the diagnosis as the judge reads it: without hedges, the
            explanation after ";" or after a comma and a hedge word (", likely secondary
            to ..."), and, for "X - Y", the more specific side.
        differential: ``diagnose``: the ranked differential, the leading diagnosis first (for
            a hedged answer, its alternatives in order), at most ``MAX_DIFFERENTIAL``
            entries: ``rank_of_diagnosis(turn.differential, case)`` gives top-k accuracy.
        diagnosis_text: ``diagnose``: the diagnosis as the doctor wrote it (markdown and
            quotes away), so that a judge can try what the cleaning cut, such as both sides
            of "X - Y".
        dropped: requests beyond the first, not carried out (``multiple_tests``).
        problems: protocol problem codes (keys of ``PROBLEMS``), each once, in that order.
    """

    action: DoctorAction
    question: str = ""
    symptoms: tuple[str, ...] = ()
    request: str = ""
    test: str | None = None
    system: str | None = None
    diagnosis: str = ""
    differential: tuple[str, ...] = ()
    diagnosis_text: str = ""
    dropped: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in DOCTOR_ACTIONS:
            raise ValueError(f"unknown doctor action {self.action!r}; one of "
                             f"{', '.join(DOCTOR_ACTIONS)}")
        object.__setattr__(self, "problems", _problems(self.problems))

    @property
    def code(self) -> int:
        """The action's index in ``DOCTOR_ACTIONS``."""
        return DOCTOR_ACTIONS.index(self.action)

    @property
    def ends_consultation(self) -> bool:
        """Whether the turn is a diagnosis."""
        return self.action == "diagnose"

    def with_problems(self, *codes: str) -> DoctorTurn:
        """The same turn with more problem codes."""
        return replace(self, problems=(*self.problems, *codes))

    @classmethod
    def nothing(cls, *problems: str) -> DoctorTurn:
        """A wasted turn."""
        return cls("do_nothing", problems=problems)

    @classmethod
    def ask(cls, question: str) -> DoctorTurn:
        """A question for the patient, with the symptom keys it names."""
        question = question.strip()
        if not question:
            raise ValueError("a question needs text")
        return cls("ask", question=question, symptoms=tuple(find_symptoms(question)))

    @classmethod
    def order(cls, test: str) -> DoctorTurn:
        """A test order: its canonical name when the vocabulary knows it, else the text with
        the problem ``unknown_test``."""
        test = test.strip()
        if not test:
            raise ValueError("a test order needs a test name")
        canonical = normalise_test(test)
        return cls("order_test", request=test, test=canonical,
                   problems=() if canonical else ("unknown_test",))

    @classmethod
    def examine(cls, system: str = WHOLE_EXAMINATION) -> DoctorTurn:
        """An examination of a body system (an ``EXAM_SYSTEMS`` name or a plain word for
        one; ``"all"`` or ``""``: the whole examination)."""
        system = system.strip()
        found = systems_in(system)
        return cls("examine", request=system or WHOLE_EXAMINATION,
                   system=found[0] if found else None,
                   problems=() if found else ("unknown_system",))

    @classmethod
    def diagnose(cls, diagnosis: str, differential: Sequence[str] = ()) -> DoctorTurn:
        """A diagnosis, cleaned of hedges (see the module docstring), with its ranked
        differential (the diagnosis first, then ``differential``'s other entries)."""
        name, alternatives = _clean_diagnosis(diagnosis)
        if not name:
            raise ValueError(f"no diagnosis in {diagnosis!r}")
        named = _merge_differential(alternatives, ())
        if len(alternatives) > 1 and len(named) == 1:
            name = named[0]  # "PE / pulmonary embolism": one disease, not a hedge
        problems = ["hedged_diagnosis"] if len(named) > 1 else []
        ranked = _merge_differential(named, differential)
        if len(ranked) > MAX_DIFFERENTIAL:
            problems.append("long_differential")
        return cls("diagnose", diagnosis=name, differential=tuple(ranked[:MAX_DIFFERENTIAL]),
                   diagnosis_text=_unwrap(diagnosis), problems=tuple(problems))


def _merge_differential(first: Sequence[str], rest: Sequence[str]) -> list[str]:
    """``first`` then ``rest``, cleaned, without entries that name a diagnosis already in."""
    out: list[str] = []
    seen: set[str] = set()
    for entry in (*first, *rest):
        name, _ = _clean_diagnosis(entry)
        key = normalise_diagnosis(name) or name.casefold()
        if name and key not in seen:
            seen.add(key)
            out.append(name)
    return out


# -- the structured decision --------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class DoctorDecision(BaseModel):
    """A language-model doctor's turn as structured output (its JSON schema is what servers
    that constrain output are sent). The field of the chosen action is required; the others
    are ignored."""

    model_config = ConfigDict(extra="forbid")

    reasoning: str = Field("", max_length=MAX_REASONING,
                           description="one or two sentences: what you think and why this "
                                       "move")
    action: Literal["ask", "examine", "order_test", "diagnose"] = Field(
        description="ask the patient a question, examine a body system, order one test, or "
                    "give your diagnosis (which ends the consultation)")
    question: str | None = Field(None, max_length=MAX_QUESTION,
                                 description="ask: your question to the patient")
    test: str | None = Field(None, max_length=MAX_NAME,
                             description="order_test: the name of one test")
    system: ExamTarget | None = Field(None, description="examine: the body system, or 'all' "
                                                        "for the whole examination")
    diagnosis: str | None = Field(None, max_length=MAX_NAME,
                                  description="diagnose: the one diagnosis you commit to")
    differential: list[Name] = Field(
        default_factory=list, max_length=MAX_DIFFERENTIAL - 1,
        description=f"diagnose: up to {MAX_DIFFERENTIAL - 1} other diagnoses you considered, "
                    f"most likely first")

    @model_validator(mode="after")
    def _argument_given(self) -> DoctorDecision:
        name = {"ask": "question", "order_test": "test", "diagnose": "diagnosis"}.get(self.action)
        if name is not None and not (getattr(self, name) or "").strip():
            raise ValueError(f"action {self.action!r} needs a non-empty {name!r}")
        return self

    def to_turn(self) -> DoctorTurn:
        """The decision as a turn, normalised and checked like a free-text answer (several
        tests in ``test``, an unknown test, a hedged diagnosis, protocol tags written into a
        question are counted as the module docstring says)."""
        if self.action == "ask":
            question = self.question or ""
            turn = DoctorTurn.ask(question)
            return turn.with_problems("mixed_protocol") if _TAG.search(question) else turn
        if self.action == "examine":
            return DoctorTurn.examine(self.system or WHOLE_EXAMINATION)
        if self.action == "order_test":
            return _request_turn(_split_tests(_clean_request(self.test or "")))
        name, _ = _clean_diagnosis(self.diagnosis or "")
        if not name:
            return DoctorTurn.nothing("diagnosis_without_name")
        return DoctorTurn.diagnose(self.diagnosis or "", self.differential)


# -- parsing free text --------------------------------------------------------------------

_SEP = r"[ \t]*[:\-\u2013\u2014]"
_LINE_START = r"(?<![^\n])[ \t]*"
_TAG = re.compile(
    rf"(?P<diagnosis>(?i:diagnosis[ \t]+ready){_SEP}|{_LINE_START}DIAGNOSIS[ \t]+READY\b)"
    rf"|(?P<test>(?i:request(?:ed)?[ \t]+tests?){_SEP}|{_LINE_START}REQUEST[ \t]+TESTS?\b)"
    rf"|(?P<exam>(?i:request(?:ed)?[ \t]+(?:physical[ \t]+)?exam(?:ination)?s?){_SEP}"
    rf"|{_LINE_START}REQUEST[ \t]+(?:PHYSICAL[ \t]+)?EXAM(?:INATION)?S?\b)"
    rf"|(?P<differential>(?i:differential(?:[ \t]+diagnos[ie]s)?){_SEP}"
    rf"|{_LINE_START}DIFFERENTIAL(?:[ \t]+DIAGNOS[IE]S)?\b)")
"""The protocol's tags: any case with a colon or dash after them, or in capitals alone at
the start of a line (a capitalised tag inside prose, "I will say DIAGNOSIS READY once I
have the results", is not one)."""

_MARKDOWN = re.compile(r"\*+|`+|__+|^[ \t]*#+[ \t]*|^[ \t]*>[ \t]?", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-+\u2022]|\d+[.)])[ \t]+(?P<item>.+)$")
_INLINE_NUMBER = re.compile(r"(?:^|[ \t]*[;,]?[ \t]+)\(?\d+[.)][ \t]+")
"""Inline numbering of a one-line differential: "1. PE; 2. pneumonia", "1) PE, 2) asthma"."""
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_SENTENCE_END = re.compile(r"(?P<word>[\w.-]*)(?P<stop>[.!?])(?=\s+[A-Z])")
_NOT_A_STOP = frozenset({"st", "dr", "mr", "mrs", "vs", "e.g", "i.e", "approx", "cf"})
_EXPLANATION = re.compile(r"\s*;|\s+(?:because|given|as evidenced by|based on)\s+|,\s+(?:"
                          r"likely|most\s+likely|more\s+likely|probably|possibly|presumably|"
                          r"secondary|due|from|will|given|caused|because|as|which|based|"
                          r"confirmed|supported|suggested|requiring|requires|need|needs|"
                          r"plan|start|treat|consider|differential|with\s+(?:a\s+)?differential)"
                          r"\b", re.IGNORECASE)
"""Where the explanation after a diagnosis starts: a semicolon, "because", "given", ...,
or a comma followed by a hedge or explanation word (", likely secondary to alcohol")."""
_DASH = re.compile(r"\s+[-\u2013\u2014]+\s+")
_NOT_A_DIAGNOSIS = re.compile(r"^(?:need|needs|will|plan|start|consider|requires?|requiring|"
                              r"likely|probably|possibly|confirm|await|pending|to|for|rule|"
                              r"treat|given|because|as|based|see|with|please)\b", re.IGNORECASE)
_LEADING_HEDGE = re.compile(
    r"^(?:(?:the\s+|my\s+)?(?:(?:final|most\s+likely|likely|probable|working)\s+)?diagnosis"
    r"(?:\s+is)?|i\s+(?:think|believe|suspect|feel)(?:\s+(?:that|it\s+is|it['\u2019]s|this"
    r"\s+is))?|(?:it|this)\s+(?:is|could\s+be|may\s+be|might\s+be|looks\s+like|seems\s+to"
    r"\s+be)|it['\u2019]s|maybe|perhaps|possibly|probably|likely|most\s+likely|could\s+be|"
    r"either)(?:\s*[:,]\s*|\s+)", re.IGNORECASE)
_ALTERNATIVE = re.compile(r"\s+(?:or|vs\.?|versus)\s+|\s*/\s*", re.IGNORECASE)
_PURPOSE = re.compile(r"\s+[-\u2013\u2014]+\s+|\s+(?:to|in\s+order\s+to)\s+(?:check|rule|look|"
                      r"assess|evaluate|exclude|see|confirm|investigate|screen|measure|detect)"
                      r"\b|\s+(?:because|given|as)\s+", re.IGNORECASE)
_TEST_SPLIT = re.compile(r"(\s*[,;+&]\s*|\s+and\s+)", re.IGNORECASE)
_TEST_LEAD = re.compile(r"^(?:(?:please|also|then|next)\s+|i\s*['\u2019]?d\s+like\s+(?:to\s+"
                        r"(?:order|get|see|do)\s+)?|(?:order|get|do|run|obtain)\s+|"
                        r"let['\u2019]?s\s+(?:get|do|order|run)\s+)+", re.IGNORECASE)


def _unwrap(text: str) -> str:
    """Markdown, surrounding quotes and brackets, trailing punctuation, extra spaces away."""
    text = " ".join(_MARKDOWN.sub("", text).split())
    while True:
        before = text
        text = text.strip(" \t" + _QUOTES).rstrip(".!;:,").lstrip(":\u2013\u2014")
        if text.startswith("- "):
            text = text[2:]
        if len(text) > 1 and (text[0], text[-1]) in (("[", "]"), ("<", ">"), ("(", ")")):
            text = text[1:-1]
        if text == before:
            return text


def _outside_parentheses(text: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    depth, inside = 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth > 0:
            depth -= 1
        inside.append(depth > 0)
    return [m for m in pattern.finditer(text) if not inside[m.start()]]


def _split_at(text: str, matches: Sequence[re.Match[str]]) -> list[str]:
    pieces, start = [], 0
    for m in matches:
        pieces.append(text[start:m.start()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


def _strip_hedges(text: str) -> str:
    while True:
        stripped = _LEADING_HEDGE.sub("", text, count=1).strip()
        if stripped == text:
            return text
        text = stripped


def _content_words(text: str) -> int:
    return len([w for w in _fold_words(re.sub(r"\([^)]*\)", " ", text))
                if len(w) > 1 and not w.isdigit()])


def _more_specific(sides: Sequence[str]) -> str:
    """The side of "X - Y" a judge reads: a side that is a plan or an explanation ("need CT
    angiography") is never it; of the others, the one with the most words outside
    parentheses (the more specific name), the first on a tie ("NSTEMI - type 1" -> "NSTEMI",
    "Pneumonia - right lower lobe pneumonia" -> the second). The raw text stays on
    ``DoctorTurn.diagnosis_text`` so that a judge can try both sides."""
    named = [s for s in sides if not _NOT_A_DIAGNOSIS.match(s)] or list(sides[:1])
    return max(named, key=_content_words)


def _clean_diagnosis(text: str) -> tuple[str, list[str]]:
    """(diagnosis, alternatives): the name without markdown, hedges and explanation, and the
    diseases it names, split at "or", "vs", "versus" and "/" outside parentheses."""
    text = _unwrap(text)
    text = _unwrap(text[:_first_sentence(text, stop=False)])
    found = _outside_parentheses(text, _EXPLANATION)
    if found:
        text = _unwrap(text[:found[0].start()])
    sides = [s for s in (_unwrap(_strip_hedges(_unwrap(p))) for p in
                         _split_at(text, _outside_parentheses(text, _DASH))) if s]
    if len(sides) > 1:
        text = _more_specific(sides)
    text = _unwrap(_strip_hedges(text))
    pieces = _split_at(text, _outside_parentheses(text, _ALTERNATIVE))
    alternatives = [p for p in (_unwrap(_strip_hedges(_unwrap(p))) for p in pieces) if p]
    return text, alternatives


def _clean_request(text: str) -> str:
    text = _unwrap(text)
    text = _unwrap(_TEST_LEAD.sub("", _unwrap(text[:_first_sentence(text, stop=False)])))
    if normalise_test(text, exact=True) is None:
        found = _outside_parentheses(text, _PURPOSE)
        if found and _unwrap(text[:found[0].start()]):
            text = _unwrap(text[:found[0].start()])
    return text


def _split_tests(text: str) -> list[str]:
    """The tests one request names: split at commas, semicolons, "+", "&" and "and", pieces
    joined back where together they name one vocabulary test exactly (longest first). The
    whole text is one test when it names one and its pieces name at most one ("Thick and
    thin blood smears for malaria", "CT abdomen and pelvis with contrast", "Urine culture
    and sensitivity" are one test each; "CBC and blood cultures" two)."""
    if not text:
        return []
    if normalise_test(text, exact=True):
        return [text]
    bare = _unwrap(re.sub(r"\([^)]*\)", " ", text)) or text
    if normalise_test(bare, exact=True):
        return [bare]
    parts = _TEST_SPLIT.split(bare)
    pieces, seps = parts[0::2], parts[1::2]
    out: list[str] = []
    i = 0
    while i < len(pieces):
        for j in range(len(pieces) - 1, i - 1, -1):
            joined = "".join(p + s for p, s in zip(pieces[i:j], seps[i:j], strict=True)) + pieces[j]
            if j == i or normalise_test(joined, exact=True):
                name = _unwrap(_TEST_LEAD.sub("", _unwrap(joined)))
                if name:
                    out.append(name)
                i = j + 1
                break
    if len(out) > 1 and sum(normalise_test(o) is not None for o in out) <= 1:
        for whole in (text, bare):
            if normalise_test(whole):
                return [whole]
    return out


def _request_turn(requests: Sequence[str], *, exam: Sequence[bool] = ()) -> DoctorTurn:
    """The turn of a list of requests (tests, or examinations where ``exam`` says so): the
    first carried out, the others dropped."""
    if not requests:
        return DoctorTurn.nothing("test_without_name")
    first, is_exam = requests[0], bool(exam and exam[0])
    if not is_exam and normalise_test(first) is None and _EXAM_WORDS.search(first):
        is_exam = True
    turn = DoctorTurn.examine(first) if is_exam else DoctorTurn.order(first)
    if len(requests) > 1:
        turn = replace(turn, dropped=tuple(requests[1:]),
                       problems=(*turn.problems, "multiple_tests"))
    return turn


def _first_sentence(line: str, *, stop: bool = True) -> int:
    """Where the first sentence of a line ends (after its full stop, or before it when not
    ``stop``), or its length. A full stop ends a sentence when a capital follows it, except
    after a usual abbreviation ("St.", "Dr.", "vs."), a number ("1. PE 2. Pneumonia") or an
    initial: one letter that opens the line ("C. Difficile colitis"); "Acute hepatitis A.
    Supportive care" ends after "A".
    ("C. difficile" has no capital after the stop and never ends a sentence.)"""
    for m in _outside_parentheses(line, _SENTENCE_END):
        word = m.group("word").rstrip(".").lower()
        initial = len(word) == 1 and not line[:m.start("word")].strip(" \t" + _QUOTES + "*:")
        if m.group("stop") == "." and (initial or word in _NOT_A_STOP or word.isdigit()):
            continue
        return m.end() if stop else m.start("stop")
    return len(line)


def _tag_value(content: str) -> tuple[str, int]:
    """The value after a tag, its first non-empty line up to the end of its first sentence,
    and where it ends in ``content`` (what follows is prose)."""
    offset = 0
    for line in content.splitlines(keepends=True):
        if line.strip():
            end = _first_sentence(line)
            return line[:end].strip(), offset + end
        offset += len(line)
    return "", len(content)


def _differential_items(content: str) -> tuple[list[str], int]:
    """Entries after a DIFFERENTIAL tag: on its line (split at ";" or ",", or at inline
    numbers: "1. PE; 2. pneumonia", "1) PE, 2) asthma"), then list items (numbered or
    bulleted) on the lines below; and where they end."""
    lines = content.splitlines(keepends=True)
    items: list[str] = []
    offset = 0
    if lines:
        end = _first_sentence(lines[0])
        head = lines[0][:end].strip()
        if head:
            item = _LIST_ITEM.match(head)
            numbered = _INLINE_NUMBER.match(head) and len(_INLINE_NUMBER.findall(head)) > 1
            if numbered:
                entries = _INLINE_NUMBER.split(head)
            else:
                entries = [item.group("item")] if item else re.split(r"\s*[;,]\s*", head)
            items += [e for e in (_unwrap(x) for x in entries) if e]
        if end < len(lines[0]):
            return items, end
        offset = len(lines[0])
        for line in lines[1:]:
            item = _LIST_ITEM.match(line.rstrip("\n"))
            if item is None:
                if line.strip():
                    break
                offset += len(line)
                continue
            items.append(_unwrap(item.group("item")))
            offset += len(line)
    return [i for i in items if i], offset


def parse_doctor_text(text: str | None) -> DoctorTurn:
    """A free-text AgentClinic answer as a turn (the rules are in the module docstring).

    ``parse_doctor_text("**DIAGNOSIS READY:** Pulmonary embolism.").diagnosis ==
    "Pulmonary embolism"``; ``parse_doctor_text("REQUEST TEST: EKG").test == "ecg"``;
    ``parse_doctor_text("Any chest pain?").symptoms == ("chest_pain",)``.

    Args:
        text: the doctor's answer (None counts as empty).

    Returns:
        The turn, with its ``problems``.
    """
    text = _MARKDOWN.sub("", text or "")
    if not _unwrap(text):
        return DoctorTurn.nothing("empty")
    problems: list[str] = []
    diagnoses: list[str] = []
    requests: list[str] = []
    exam: list[bool] = []
    differential: list[str] = []
    prose: list[str] = []
    tags = list(_TAG.finditer(text))
    prose.append(text[:tags[0].start()] if tags else text)
    for k, tag in enumerate(tags):
        end = tags[k + 1].start() if k + 1 < len(tags) else len(text)
        content = text[tag.end():end]
        kind = tag.lastgroup
        if kind == "differential":
            items, used = _differential_items(content)
            differential += items
        else:
            line, used = _tag_value(content)
            if kind == "diagnosis":
                if _clean_diagnosis(line)[0]:
                    diagnoses.append(line)
                else:
                    problems.append("diagnosis_without_name")
            elif kind == "test":
                named = _split_tests(_clean_request(line))
                requests += named
                exam += [False] * len(named)
                if not named:
                    problems.append("test_without_name")
            else:
                named = [_unwrap(p) for p in re.split(r"\s*[,;]\s*", _clean_request(line))]
                named = [n for n in named if n] or [WHOLE_EXAMINATION]
                requests += named
                exam += [True] * len(named)
        prose.append(content[used:])
    question = _unwrap(" ".join(p.strip() for p in prose if p.strip()))
    asks = "?" in question
    if diagnoses:
        if len(diagnoses) > 1:
            problems.append("multiple_diagnoses")
        if requests or asks:
            problems.append("mixed_protocol")
        turn = DoctorTurn.diagnose(diagnoses[0], differential)
    elif requests:
        if asks:
            problems.append("mixed_protocol")
        turn = _request_turn(requests, exam=exam)
        if turn.action == "examine" and len(systems_in(turn.request)) > 1:
            problems.append("multiple_tests")
    elif question:
        turn = DoctorTurn.ask(question)
    else:
        turn = DoctorTurn.nothing()
    return turn.with_problems(*problems)


# -- rendering ----------------------------------------------------------------------------

SPEAKERS: Mapping[str, str] = MappingProxyType({
    "do_nothing": "Patient", "ask": "Patient", "examine": "Measurement",
    "order_test": "Measurement", "diagnose": "Moderator"})
"""Who answers each action in a transcript."""


def _system_label(system: str) -> str:
    if system == "heent":
        return "Head, eyes, ears, nose and throat"
    return system.replace("_", " ").capitalize()


def doctor_text(turn: DoctorTurn) -> str:
    """The doctor's line of a turn in AgentClinic's protocol (what ``parse_doctor_text``
    reads back into the same action and arguments): the question; ``REQUEST TEST: <label>``;
    ``REQUEST EXAM: <system>``; ``DIAGNOSIS READY: <diagnosis>`` with a ``DIFFERENTIAL:``
    line when the differential has more than the diagnosis; ``""`` for a wasted turn."""
    if turn.action == "ask":
        return turn.question
    if turn.action == "order_test":
        name = TEST_VOCABULARY[turn.test].label if turn.test else turn.request
        return f"REQUEST TEST: {name}"
    if turn.action == "examine":
        if turn.system == WHOLE_EXAMINATION:
            return "REQUEST EXAM: full physical examination"
        return f"REQUEST EXAM: {turn.system.replace('_', ' ') if turn.system else turn.request}"
    if turn.action == "diagnose":
        text = f"DIAGNOSIS READY: {turn.diagnosis}"
        if len(turn.differential) > 1:
            text += "\nDIFFERENTIAL: " + "; ".join(turn.differential)
        return text
    return ""


def render_turn(turn: DoctorTurn, answer: str | None = None) -> str:
    """A turn and its answer as transcript lines: ``Doctor: ...`` then, when given,
    ``Patient: ...`` (questions), ``Measurement: ...`` (tests, examinations) or
    ``Moderator: ...`` (the verdict on a diagnosis)."""
    lines = [f"Doctor: {doctor_text(turn) or '(no answer)'}"]
    if answer is not None:
        lines.append(f"{SPEAKERS[turn.action]}: {answer}")
    return "\n".join(lines)


# -- the measurement agent ----------------------------------------------------------------

NORMAL_READINGS = "NORMAL READINGS"
"""AgentClinic's measurement answer for what the case does not list."""


def measurement_reply(case: Case, test_text: str) -> str:
    """What the measurement agent answers to ``REQUEST TEST: <test_text>`` for ``case``.

    ``RESULTS: <label>: <result>`` for a test the case lists (a vocabulary test under its
    label, an imported case's own test under its name); ``RESULTS: <label>: NORMAL
    READINGS`` for a vocabulary test the case does not list, and ``RESULTS: <test_text>:
    NORMAL READINGS`` for a test nobody knows (AgentClinic's rule: unknown tests read normal;
    the caller counts them: ``result_of(case, test_text).name is None``).

    Raises:
        ValueError: when ``test_text`` is empty.
    """
    text = _unwrap(test_text)
    if not text:
        raise ValueError("a test order needs a test name")
    outcome = result_of(case, text)
    if outcome.name is None:
        return f"RESULTS: {text}: {NORMAL_READINGS}"
    info = TEST_VOCABULARY.get(outcome.name)
    label = info.label if info is not None else outcome.name
    listed = outcome.name in case.tests or outcome.name in case.case_tests
    return f"RESULTS: {label}: {outcome.result if listed else NORMAL_READINGS}"


def vital_signs_text(case: Case) -> str:
    """The case's vital signs in one line ("" when it gives none)."""
    v = case.examination.vital_signs
    parts = []
    if v.temperature_c is not None:
        parts.append(f"temperature {v.temperature_c:g} °C")
    if v.heart_rate_bpm is not None:
        parts.append(f"heart rate {v.heart_rate_bpm}/min")
    if v.systolic_bp_mmhg is not None and v.diastolic_bp_mmhg is not None:
        parts.append(f"blood pressure {v.systolic_bp_mmhg}/{v.diastolic_bp_mmhg} mmHg")
    elif v.systolic_bp_mmhg is not None:
        parts.append(f"systolic blood pressure {v.systolic_bp_mmhg} mmHg")
    if v.respiratory_rate_per_min is not None:
        parts.append(f"respiratory rate {v.respiratory_rate_per_min}/min")
    if v.oxygen_saturation_pct is not None:
        parts.append(f"oxygen saturation {v.oxygen_saturation_pct:g}%")
    return ", ".join(parts)


def examination_reply(case: Case, system: str | None) -> str:
    """What the measurement agent answers to an examination of ``system`` (an
    ``EXAM_SYSTEMS`` name, ``"all"``, or None for a system nobody knows).

    ``RESULTS: <System> examination: <findings>`` for a system the case reports; ``NORMAL
    READINGS`` for one it does not; vital signs come with ``general`` and ``all``; ``all``
    gives every system the case reports, one line each; None: a reply that the examination
    was not understood (not "normal": the doctor learns nothing about the patient).
    """
    if system is None:
        return ("RESULTS: the examination requested was not understood; name a body system ("
                f"{', '.join(s.replace('_', ' ') for s in EXAM_SYSTEMS)}) or ask for a full "
                "physical examination")
    findings = case.examination.findings
    vitals = vital_signs_text(case)
    if system == WHOLE_EXAMINATION:
        lines = [f"Vital signs: {vitals}"] if vitals else []
        lines += [f"{_system_label(s)}: {findings[s]}" for s in EXAM_SYSTEMS if s in findings]
        return "RESULTS:\n" + "\n".join(lines) if lines else f"RESULTS: {NORMAL_READINGS}"
    if system not in EXAM_SYSTEMS:
        raise ValueError(f"unknown examination system {system!r}; one of "
                         f"{', '.join(EXAM_SYSTEMS)} or {WHOLE_EXAMINATION!r}")
    text = findings.get(system, NORMAL_READINGS)
    if system == "general" and vitals:
        text = f"{text}; vital signs: {vitals}"
    return f"RESULTS: {_system_label(system)} examination: {text}"
