"""Patient personas after PatientSim's four dimensions: what a rule patient's behaviour
parameters are, over arrays of patients, and what a language-model patient is told.

Core objects:
    PERSONALITIES, LANGUAGE_LEVELS, RECALL_LEVELS: the levels of three dimensions, in code
        order; the fourth, confusion, is a boolean (``dazed``).
    Persona: one combination, validated (a frozen pydantic model, so that a YAML file can
        name one); ``index`` numbers it among ``N_PERSONAS`` (72).
    all_personas: the 72 combinations, in index order.
    persona_index, persona_from_index: combinations as one integer per patient.
    encode: level names to codes, over an array.
    persona_arrays: the behaviour parameters of many patients at once (numpy, no per-patient
        objects): recall, wrong answers, volunteered symptoms, and confidence in the doctor.
    confidence_after: a patient's confidence after turns, tests and a biased doctor's manner.
    persona_text: the paragraph a language-model patient's prompt uses for its persona.

PatientSim combines personality (plain, verbose, distrustful, pleasing, impatient,
overanxious), language proficiency (basic, intermediate, advanced), medical-history recall
(low, high) and cognitive confusion (dazed or not): 6 x 3 x 2 x 2 = 72 combinations. Its
published persona set uses 37 of them; which 37 is not reproduced here. Every combination is
available, and a run's YAML distributions choose the mix.

The behaviour parameters are illustrative, not estimates from data. Their directions follow
what the references say (``../shared/reference/clinic.md``): low recall makes a patient
leave out symptoms it has; a dazed patient answers wrongly at times; patients' confidence in
the doctor drops with a biased doctor (AgentClinic). Each parameter is a sum of one term per
dimension (``BEHAVIOUR`` lists them), clipped to its range:

=====================  =================================================================
parameter              meaning, and the terms
=====================  =================================================================
``miss_rate``          chance of not reporting a symptom it has when asked: recall low
                       0.30 / high 0.05; distrustful +0.10, impatient +0.05, verbose
                       -0.02, overanxious -0.03; basic language +0.10, intermediate +0.03;
                       dazed +0.10. In [0, 0.9].
``wrong_rate``         chance that an answer is the opposite of the truth: dazed 0.20;
                       basic language +0.05, intermediate +0.02 (misunderstood
                       questions). In [0, 0.5].
``volunteer_rate``     chance of mentioning one more of its symptoms unasked: verbose
                       0.30, overanxious 0.20, plain 0.10, pleasing 0.10, impatient 0.02,
                       distrustful 0.02; recall high +0.05; basic language -0.05. In [0, 1].
``confidence0``        confidence in the doctor at the start: pleasing 0.85, plain 0.70,
                       verbose 0.70, impatient 0.60, overanxious 0.50, distrustful 0.40.
``confidence_turn``    change per turn of the consultation: impatient -0.030, distrustful
                       -0.010, plain -0.005, verbose 0, pleasing 0, overanxious +0.010
                       (attention reassures).
``confidence_test``    change per test ordered: overanxious +0.030, distrustful +0.020,
                       plain, verbose, pleasing +0.010, impatient -0.010 (more waiting).
``confidence_bias``    drop per turn with a fully biased doctor's manner (scaled by the
                       bias, 0 to 1): distrustful 0.040, impatient 0.030, overanxious
                       0.030, plain 0.020, verbose 0.020, pleasing 0.010.
=====================  =================================================================

A rule patient draws its answers with the scenario's per-agent random numbers against these
rates; ``confidence_after`` gives its confidence from the counts of a consultation.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

Personality = Literal["plain", "verbose", "distrustful", "pleasing", "impatient", "overanxious"]
Language = Literal["basic", "intermediate", "advanced"]
Recall = Literal["low", "high"]

PERSONALITIES: tuple[Personality, ...] = get_args(Personality)
LANGUAGE_LEVELS: tuple[Language, ...] = get_args(Language)
RECALL_LEVELS: tuple[Recall, ...] = get_args(Recall)
CONFUSION_LEVELS: tuple[str, ...] = ("clear", "dazed")
"""Confusion, in code order: ``Persona.dazed`` False is ``clear`` (0), True ``dazed`` (1)."""

DIMENSIONS: Mapping[str, tuple[object, ...]] = MappingProxyType({
    "personality": PERSONALITIES, "language": LANGUAGE_LEVELS, "recall": RECALL_LEVELS,
    "dazed": CONFUSION_LEVELS})
"""Each dimension's levels in code order; ``persona_index`` orders them the same way."""

N_PERSONAS = len(PERSONALITIES) * len(LANGUAGE_LEVELS) * len(RECALL_LEVELS) * 2
"""72 combinations."""
PATIENTSIM_PUBLISHED = 37
"""How many combinations PatientSim's published persona set uses (not which)."""


class Persona(BaseModel):
    """One patient persona: a level of each dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    personality: Personality = "plain"
    language: Language = "advanced"
    recall: Recall = "high"
    dazed: bool = False

    @property
    def index(self) -> int:
        """Its number among the ``N_PERSONAS`` combinations (``persona_index``)."""
        return int(persona_index(PERSONALITIES.index(self.personality),
                                 LANGUAGE_LEVELS.index(self.language),
                                 RECALL_LEVELS.index(self.recall), int(self.dazed)))

    @classmethod
    def from_index(cls, index: int) -> Persona:
        """The persona numbered ``index`` (0 to 71)."""
        return all_personas()[index]

    def behaviour(self) -> dict[str, float]:
        """Its behaviour parameters (``persona_arrays`` for one patient)."""
        arrays = persona_arrays(np.array([PERSONALITIES.index(self.personality)]),
                                np.array([LANGUAGE_LEVELS.index(self.language)]),
                                np.array([RECALL_LEVELS.index(self.recall)]),
                                np.array([self.dazed]))
        return {name: float(values[0]) for name, values in arrays.items()}

    def text(self) -> str:
        """The persona paragraph of its prompt (``persona_text``)."""
        return persona_text(self)


@cache
def all_personas() -> tuple[Persona, ...]:
    """The 72 combinations in index order: personality slowest, then language, recall,
    and confusion (clear before dazed)."""
    return tuple(Persona(personality=p, language=lang, recall=r, dazed=d)
                 for p in PERSONALITIES for lang in LANGUAGE_LEVELS for r in RECALL_LEVELS
                 for d in (False, True))


def encode(values: np.ndarray | list[str], levels: tuple[str, ...], *,
           dimension: str = "value") -> np.ndarray:
    """Level names to their codes (positions in ``levels``), over an array.

    Raises:
        ValueError: naming the dimension and the first unknown value.
    """
    values = np.asarray(values)
    table = np.asarray(levels)
    match = values[..., None] == table
    known = match.any(axis=-1)
    if not known.all():
        bad = values[~known].tolist()[0]
        raise ValueError(f"unknown {dimension} {bad!r}; one of {', '.join(levels)}")
    return match.argmax(axis=-1).astype(np.int64)


def _codes(values: np.ndarray | list, levels: tuple, dimension: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "USO":
        return encode(array, levels, dimension=dimension)
    if array.dtype.kind not in "biu":
        raise ValueError(f"{dimension}: codes must be integers or level names, not "
                         f"{array.dtype}")
    codes = array.astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= len(levels)):
        raise ValueError(f"{dimension}: codes must lie in 0..{len(levels) - 1}")
    return codes


def persona_index(personality: np.ndarray | int, language: np.ndarray | int,
                  recall: np.ndarray | int, dazed: np.ndarray | int | bool) -> np.ndarray:
    """Each patient's combination number, 0 to 71 (codes or level names; arrays broadcast):
    ``((personality * 3 + language) * 2 + recall) * 2 + dazed``."""
    p = _codes(personality, PERSONALITIES, "personality")
    lang = _codes(language, LANGUAGE_LEVELS, "language")
    r = _codes(recall, RECALL_LEVELS, "recall")
    d = _codes(dazed, CONFUSION_LEVELS, "dazed")
    return ((p * len(LANGUAGE_LEVELS) + lang) * len(RECALL_LEVELS) + r) * 2 + d


def persona_from_index(index: np.ndarray | int) -> dict[str, np.ndarray]:
    """The codes of each dimension (``personality``, ``language``, ``recall`` as int64,
    ``dazed`` as bool) of combination numbers."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= N_PERSONAS):
        raise ValueError(f"persona indexes lie in 0..{N_PERSONAS - 1}")
    rest, dazed = np.divmod(index, 2)
    rest, recall = np.divmod(rest, len(RECALL_LEVELS))
    personality, language = np.divmod(rest, len(LANGUAGE_LEVELS))
    return {"personality": personality, "language": language, "recall": recall,
            "dazed": dazed.astype(bool)}


# -- behaviour ------------------------------------------------------------------------------

def _parameter(personality: dict[str, float] | None = None,
               language: dict[str, float] | None = None, recall: dict[str, float] | None = None,
               dazed: float = 0.0) -> Mapping[str, np.ndarray]:
    """One parameter's terms as read-only arrays in code order (levels left out: 0)."""
    def terms(levels: tuple[str, ...], given: dict[str, float] | None) -> np.ndarray:
        given = given or {}
        unknown = set(given) - set(levels)
        if unknown:
            raise ValueError(f"unknown levels {sorted(unknown)}")
        array = np.array([given.get(level, 0.0) for level in levels], dtype=float)
        array.flags.writeable = False
        return array
    return MappingProxyType({
        "personality": terms(PERSONALITIES, personality),
        "language": terms(LANGUAGE_LEVELS, language),
        "recall": terms(RECALL_LEVELS, recall),
        "dazed": terms(CONFUSION_LEVELS, {"dazed": dazed})})


BEHAVIOUR: Mapping[str, Mapping[str, np.ndarray]] = MappingProxyType({
    "miss_rate": _parameter(
        personality={"verbose": -0.02, "distrustful": 0.10, "impatient": 0.05,
                     "overanxious": -0.03},
        language={"basic": 0.10, "intermediate": 0.03},
        recall={"low": 0.30, "high": 0.05}, dazed=0.10),
    "wrong_rate": _parameter(language={"basic": 0.05, "intermediate": 0.02}, dazed=0.20),
    "volunteer_rate": _parameter(
        personality={"plain": 0.10, "verbose": 0.30, "distrustful": 0.02, "pleasing": 0.10,
                     "impatient": 0.02, "overanxious": 0.20},
        language={"basic": -0.05}, recall={"high": 0.05}),
    "confidence0": _parameter(
        personality={"plain": 0.70, "verbose": 0.70, "distrustful": 0.40, "pleasing": 0.85,
                     "impatient": 0.60, "overanxious": 0.50}),
    "confidence_turn": _parameter(
        personality={"plain": -0.005, "distrustful": -0.010, "impatient": -0.030,
                     "overanxious": 0.010}),
    "confidence_test": _parameter(
        personality={"plain": 0.010, "verbose": 0.010, "distrustful": 0.020,
                     "pleasing": 0.010, "impatient": -0.010, "overanxious": 0.030}),
    "confidence_bias": _parameter(
        personality={"plain": 0.020, "verbose": 0.020, "distrustful": 0.040,
                     "pleasing": 0.010, "impatient": 0.030, "overanxious": 0.030}),
})
"""Per parameter, its term for each level of each dimension (read-only arrays in code order;
``dazed``: clear, dazed). The module docstring's table says the same in words."""

RANGES: Mapping[str, tuple[float, float]] = MappingProxyType({
    "miss_rate": (0.0, 0.9), "wrong_rate": (0.0, 0.5), "volunteer_rate": (0.0, 1.0),
    "confidence0": (0.0, 1.0), "confidence_turn": (-1.0, 1.0), "confidence_test": (-1.0, 1.0),
    "confidence_bias": (0.0, 1.0)})
"""The range each parameter is clipped to."""


def persona_arrays(personality: np.ndarray | int, language: np.ndarray | int,
                   recall: np.ndarray | int, dazed: np.ndarray | int | bool
                   ) -> dict[str, np.ndarray]:
    """The behaviour parameters of many patients at once.

    Args:
        personality, language, recall: codes (positions in ``PERSONALITIES``,
            ``LANGUAGE_LEVELS``, ``RECALL_LEVELS``) or level names, one per patient; arrays
            broadcast together (a scalar gives every patient that level).
        dazed: booleans, 0/1, or ``"clear"`` / ``"dazed"``.

    Returns:
        Every parameter of ``BEHAVIOUR`` as a float64 array of the broadcast shape (see the
        module docstring for their meaning and values). Pure: the same codes give the same
        numbers, and a patient's numbers do not depend on the others in the batch.

    Raises:
        ValueError: an unknown level name or a code out of range, naming the dimension.
    """
    p, lang, r, d = np.broadcast_arrays(
        _codes(personality, PERSONALITIES, "personality"),
        _codes(language, LANGUAGE_LEVELS, "language"),
        _codes(recall, RECALL_LEVELS, "recall"),
        _codes(dazed, CONFUSION_LEVELS, "dazed"))
    out: dict[str, np.ndarray] = {}
    for name, terms in BEHAVIOUR.items():
        value = (terms["personality"][p] + terms["language"][lang] + terms["recall"][r]
                 + terms["dazed"][d])
        low, high = RANGES[name]
        out[name] = np.clip(value, low, high)
    return out


def confidence_after(params: Mapping[str, np.ndarray], turns: np.ndarray | int,
                     tests: np.ndarray | int, bias_turns: np.ndarray | float = 0.0
                     ) -> np.ndarray:
    """Patients' confidence in their doctor, 0 to 1, after a consultation so far.

    The clinic scenario applies the same terms turn by turn (clipping after each, so that an
    event may set a patient's confidence and later turns move on from it); without clipping
    on the way the two agree.

    ``confidence0 + confidence_turn * turns + confidence_test * tests - confidence_bias *
    bias_turns``, clipped to [0, 1] once at the end (so that it depends on the counts only,
    not on their order).

    Args:
        params: ``persona_arrays``' result.
        turns: turns taken, per patient.
        tests: tests ordered, per patient.
        bias_turns: the doctor's bias (0 to 1) summed over the turns so far (a fully biased
            doctor for 3 turns: 3.0).
    """
    value = (params["confidence0"] + params["confidence_turn"] * np.asarray(turns)
             + params["confidence_test"] * np.asarray(tests)
             - params["confidence_bias"] * np.asarray(bias_turns, dtype=float))
    return np.clip(value, 0.0, 1.0)


# -- language-model patients ------------------------------------------------------------

PERSONALITY_TEXT: Mapping[str, str] = MappingProxyType({
    "plain": "You answer plainly and to the point, without extra detail or emotion.",
    "verbose": "You are talkative: you answer at length, with stories and details beside "
               "the point, and the doctor may need to steer you back.",
    "distrustful": "You distrust doctors: you ask why they want to know things, doubt what "
                   "they suggest, and are slow to share personal details.",
    "pleasing": "You are eager to please the doctor: you agree readily, play your "
                "complaints down and avoid disagreeing, even when unsure.",
    "impatient": "You are impatient: you want this over quickly, give short answers and "
                 "show irritation at long or repeated questions.",
    "overanxious": "You are very anxious about your health: you worry aloud, fear the "
                   "worst, ask for reassurance and describe your symptoms as worse than "
                   "they are, though you never add symptoms you do not have.",
})
LANGUAGE_TEXT: Mapping[str, str] = MappingProxyType({
    "basic": "Your English is basic: you use short, simple sentences and everyday words, "
             "make small mistakes, do not know medical terms and ask the doctor to say "
             "things more simply when they use them.",
    "intermediate": "Your English is good for daily life: you speak in plain sentences and "
                    "know a few common medical words, but not technical ones.",
    "advanced": "You speak fluently and use medical words correctly when you know them.",
})
RECALL_TEXT: Mapping[str, str] = MappingProxyType({
    "low": "You remember your medical history poorly: you are vague about dates, past "
           "illnesses and the names of your medicines, and you may forget to mention "
           "something unless asked directly.",
    "high": "You remember your medical history well: dates, past illnesses and medicines, "
            "when asked.",
})
CONFUSION_TEXT: Mapping[bool, str] = MappingProxyType({
    False: "Your mind is clear and you follow the conversation.",
    True: "You feel dazed: you are slow to follow, sometimes misunderstand a question or "
          "answer in a muddled way, and may need it repeated.",
})

ROLE_TEXT = "You are the patient in a medical consultation; the doctor will ask questions."
NO_DIAGNOSIS_INSTRUCTION = ("Never reveal or guess your diagnosis, even if asked: you do not "
                            "know it.")
"""In every persona text."""
FIDELITY_INSTRUCTION = ("Describe only the symptoms, history and facts your case gives; never "
                        "invent symptoms your case does not list: if asked about one, say you "
                        "have not had it.")
"""In every persona text."""


def persona_text(persona: Persona | int) -> str:
    """The persona paragraph of a language-model patient's prompt: its role, one sentence
    (or two) per dimension, then ``NO_DIAGNOSIS_INSTRUCTION`` and ``FIDELITY_INSTRUCTION``.

    Args:
        persona: a persona, or its index (0 to 71).
    """
    if not isinstance(persona, Persona):
        persona = Persona.from_index(int(persona))
    return " ".join((ROLE_TEXT, PERSONALITY_TEXT[persona.personality],
                     LANGUAGE_TEXT[persona.language], RECALL_TEXT[persona.recall],
                     CONFUSION_TEXT[persona.dazed], NO_DIAGNOSIS_INSTRUCTION,
                     FIDELITY_INSTRUCTION))
