"""Language-model patients (``patients: llm``): AgentClinic's patient agent, played by the model
of the ``llm:`` section in a PatientSim persona.

The scenario asks them, one batch per step, for the answer to each doctor's question (the
persona paragraph, the patient's own case without its diagnosis, the consultation so far and
the question) and, when a consultation ends, for their confidence in the doctor. A reply says
in words what the patient says and, for a rule doctor who needs it, whether it amounts to
"yes" to the symptom asked about. A patient whose reply does not validate answers by rule
instead (counted).

Core objects:
    PatientReply, PatientConfidence: the answers a model must give.
    case_brief: what a patient knows of its case (never the diagnosis).
    reply_messages, confidence_messages: the chat messages of the two questions.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .cases import Case
from .persona import persona_text

MAX_REPLY = 800


class PatientReply(BaseModel):
    """A patient's answer to the doctor."""

    reply: str = Field(max_length=MAX_REPLY, description="what you say to the doctor, in your "
                       "persona's words")
    yes: bool | None = Field(None, description="when the doctor asked whether you have a "
                             "symptom: true if your reply says you have it, false if not; null "
                             "for other questions")


class PatientConfidence(BaseModel):
    """A patient's confidence in its doctor after the consultation."""

    reasoning: str = Field("", max_length=MAX_REPLY)
    confidence: int = Field(ge=0, le=10, description="how much you trust this doctor's "
                            "diagnosis and care, 0 (not at all) to 10 (fully)")


def case_brief(case: Case) -> str:
    """The patient's own facts: demographics, history, symptoms, past, social and family
    history, medications, allergies; never the diagnosis nor test results."""
    p, d = case.patient, case.patient.demographics
    lines = [f"About you: {d.age if d.age is not None else 'adult'}"
             f"{' year-old' if d.age is not None else ''} {d.sex or 'person'}"
             f"{'; ' + d.description if d.description else ''}.",
             f"What brings you here: {p.primary_symptom}.",
             f"Your story: {p.history}"]
    if p.secondary_symptoms:
        lines.append("Other things you have noticed: " + "; ".join(p.secondary_symptoms) + ".")
    for label, text in (("Past illnesses", p.past_medical_history),
                        ("Your life (work, habits)", p.social_history),
                        ("Your family", p.family_history),
                        ("When asked about other symptoms", p.review_of_systems)):
        if text:
            lines.append(f"{label}: {text}")
    lines.append("Your medicines: " + (", ".join(p.medications) or "none") + ".")
    lines.append("Your allergies: " + (", ".join(p.allergies) or "none known") + ".")
    return "\n".join(lines)


def reply_messages(case: Case, persona: int, transcript: str,
                   question: str) -> list[dict[str, str]]:
    """The question to a language-model patient: its persona and case, the consultation so
    far and the doctor's question."""
    system = (f"{persona_text(persona)}\n\n{case_brief(case)}\n\nAnswer the doctor's question "
              "as this patient, briefly, in one to three sentences. Answer with JSON: "
              '{"reply": "<what you say>", "yes": true, false or null (true or false only '
              'when asked whether you have a symptom)}.')
    user = (f"The consultation so far:\n{transcript.strip()}\n\n" if transcript.strip() else "")
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"{user}Doctor: {question}"}]


def confidence_messages(case: Case, persona: int, transcript: str) -> list[dict[str, str]]:
    """The question to a language-model patient when its consultation has ended."""
    system = (f"{persona_text(persona)}\n\n{case_brief(case)}\n\nYour consultation is over. "
              'Answer with JSON: {"reasoning": "<one sentence>", "confidence": <0 to 10>}.')
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"The consultation:\n{transcript.strip()}\n\nHow much "
             "do you trust this doctor's diagnosis and care, from 0 (not at all) to 10 "
             "(fully)?"}]
