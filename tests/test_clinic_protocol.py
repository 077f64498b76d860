"""The clinic's doctor protocol and patient personas: AgentClinic free-text answers (tags,
markdown, case, mixed protocols, hedges, several tests, empty answers) parsed into the shared
turn schema, the structured decision model and its JSON schema, transcripts that parse back,
the measurement agent's replies on the shipped cases, and PatientSim personas (behaviour
arrays and prompt texts for all 72 combinations)."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from pydantic import ValidationError

from populace.scenarios.clinic.cases import TestResult, default_library
from populace.scenarios.clinic.diagnosis import diagnosis_matches, rank_of_diagnosis
from populace.scenarios.clinic.persona import (
    BEHAVIOUR,
    FIDELITY_INSTRUCTION,
    LANGUAGE_LEVELS,
    N_PERSONAS,
    NO_DIAGNOSIS_INSTRUCTION,
    PERSONALITIES,
    RANGES,
    RECALL_LEVELS,
    Persona,
    all_personas,
    confidence_after,
    persona_arrays,
    persona_from_index,
    persona_index,
    persona_text,
)
from populace.scenarios.clinic.protocol import (
    DOCTOR_ACTIONS,
    MAX_DIFFERENTIAL,
    MAX_REASONING,
    NORMAL_READINGS,
    PROBLEMS,
    WHOLE_EXAMINATION,
    DoctorDecision,
    DoctorTurn,
    doctor_text,
    examination_reply,
    measurement_reply,
    normalise_system,
    parse_doctor_text,
    render_turn,
)
from populace.scenarios.clinic.vocabulary import EXAM_SYSTEMS, TEST_VOCABULARY


@pytest.fixture(scope="module")
def library():
    return default_library()


# -- free text -------------------------------------------------------------------------------

DIAGNOSES = [
    ("DIAGNOSIS READY: Pulmonary embolism", "Pulmonary embolism"),
    ("**DIAGNOSIS READY:** Pulmonary embolism.", "Pulmonary embolism"),
    ("**DIAGNOSIS READY**: Pulmonary embolism", "Pulmonary embolism"),
    ("DIAGNOSIS READY: **Pulmonary embolism**!", "Pulmonary embolism"),
    ("diagnosis ready: pulmonary embolism", "pulmonary embolism"),
    ("Diagnosis Ready - Type II diabetes mellitus", "Type II diabetes mellitus"),
    ("DIAGNOSIS READY Pneumonia", "Pneumonia"),
    ("## DIAGNOSIS READY: `Gout`", "Gout"),
    ("DIAGNOSIS READY: [Gout]", "Gout"),
    ('DIAGNOSIS READY: "Migraine".', "Migraine"),
    ("DIAGNOSIS READY:\n\n**Acute pancreatitis** - likely gallstone related.",
     "Acute pancreatitis"),
    ("DIAGNOSIS READY: Pulmonary embolism. The patient should start anticoagulation.",
     "Pulmonary embolism"),
    ("DIAGNOSIS READY: C. difficile infection. Start oral vancomycin.",
     "C. difficile infection"),
    ("DIAGNOSIS READY: I think it's acute appendicitis", "acute appendicitis"),
    ("diagnosis ready: the most likely diagnosis is community-acquired pneumonia!",
     "community-acquired pneumonia"),
    ("DIAGNOSIS READY: Most likely, giant cell arteritis because of the jaw claudication",
     "giant cell arteritis"),
    ("Thank you for your patience. Given the ST elevation in II, III and aVF:\n"
     "DIAGNOSIS READY: Inferior STEMI", "Inferior STEMI"),
    ("DIAGNOSIS READY: PE / pulmonary embolism", "PE"),
]


@pytest.mark.parametrize(("text", "diagnosis"), DIAGNOSES)
def test_diagnosis_tags(text: str, diagnosis: str) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "diagnose" and turn.ends_consultation
    assert turn.diagnosis == diagnosis
    assert turn.differential == (diagnosis,)
    assert turn.problems == ()


@pytest.mark.parametrize(("text", "diagnosis"), [
    ("DIAGNOSIS READY: Acute pancreatitis, likely secondary to alcohol use.",
     "Acute pancreatitis"),
    ("DIAGNOSIS READY: Community-acquired pneumonia; will start antibiotics.",
     "Community-acquired pneumonia"),
    ("DIAGNOSIS READY: Iron deficiency anemia; differential includes thalassemia trait.",
     "Iron deficiency anemia"),
    ("DIAGNOSIS READY: Acute kidney injury (prerenal), due to dehydration",
     "Acute kidney injury (prerenal)"),
    ("DIAGNOSIS READY: Migraine, probably triggered by stress", "Migraine"),
    ("DIAGNOSIS READY: Acute hepatitis A. Supportive care", "Acute hepatitis A"),
    ("DIAGNOSIS READY: Acute hepatitis A. Supportive care.", "Acute hepatitis A"),
    ("DIAGNOSIS READY: C. difficile colitis", "C. difficile colitis"),
    ("DIAGNOSIS READY: C. Difficile colitis. Stop the antibiotics.", "C. Difficile colitis"),
    ("DIAGNOSIS READY: Non-ST elevation myocardial infarction (NSTEMI) - type 1",
     "Non-ST elevation myocardial infarction (NSTEMI)"),
    ("DIAGNOSIS READY: Subarachnoid hemorrhage - need CT angiography", "Subarachnoid hemorrhage"),
    ("DIAGNOSIS READY: Pneumonia - right lower lobe pneumonia", "right lower lobe pneumonia"),
])
def test_trailing_clauses_are_cut_from_the_diagnosis(text: str, diagnosis: str) -> None:
    turn = parse_doctor_text(text)
    assert turn.diagnosis == diagnosis and turn.differential == (diagnosis,)
    assert turn.problems == ()


def test_the_raw_diagnosis_text_stays_on_the_turn() -> None:
    turn = parse_doctor_text("DIAGNOSIS READY: **Subarachnoid hemorrhage - need CT angiography**")
    assert turn.diagnosis_text == "Subarachnoid hemorrhage - need CT angiography"
    assert DoctorTurn.diagnose("Gout").diagnosis_text == "Gout"


def test_every_library_diagnosis_survives_markdown_and_hedges(library) -> None:
    for case in library:
        for text in (f"**DIAGNOSIS READY:** Likely {case.diagnosis}.",
                     f"diagnosis ready: I think it is {case.diagnosis.lower()}",
                     f"DIAGNOSIS READY: *{case.diagnosis}* - see the test results."):
            turn = parse_doctor_text(text)
            assert turn.action == "diagnose" and turn.problems == (), text
            assert diagnosis_matches(turn.diagnosis, case), (text, turn.diagnosis)


def test_a_hedged_diagnosis_is_refused_by_the_judge_but_ranked(library) -> None:
    for case in library:
        if not case.differential:
            continue
        other = case.differential[0]
        turn = parse_doctor_text(f"DIAGNOSIS READY: maybe {case.diagnosis} or {other}")
        assert turn.problems == ("hedged_diagnosis",)
        assert not diagnosis_matches(turn.diagnosis, case)
        assert rank_of_diagnosis(turn.differential, case) == 1
        turn = parse_doctor_text(f"DIAGNOSIS READY: {other} vs. {case.diagnosis}")
        assert turn.problems == ("hedged_diagnosis",)
        assert rank_of_diagnosis(turn.differential, case) == 2


@pytest.mark.parametrize(("text", "differential"), [
    ("DIAGNOSIS READY: either gout or septic arthritis", ("gout", "septic arthritis")),
    ("DIAGNOSIS READY: DKA/HHS", ("DKA", "HHS")),
    ("DIAGNOSIS READY: Possibly viral meningitis versus bacterial meningitis",
     ("viral meningitis", "bacterial meningitis")),
])
def test_alternatives_become_the_differential(text: str, differential: tuple) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "diagnose"
    assert turn.differential == differential
    assert turn.problems == ("hedged_diagnosis",)


def test_parentheses_do_not_split_a_diagnosis() -> None:
    turn = parse_doctor_text("DIAGNOSIS READY: Pulmonary embolism (or possibly DVT)")
    assert turn.diagnosis == "Pulmonary embolism (or possibly DVT)"
    assert turn.problems == ()


@pytest.mark.parametrize("line", [
    "DIFFERENTIAL: 1. PE; 2. pneumonia; 3. pericarditis",
    "DIFFERENTIAL: 1) PE, 2) pneumonia, 3) pericarditis",
    "DIFFERENTIAL: 1. PE 2. Pneumonia 3. Pericarditis. I will review the CT.",
])
def test_inline_numbering_splits_the_differential(line: str) -> None:
    turn = parse_doctor_text(f"DIAGNOSIS READY: Asthma\n{line}")
    assert [d.lower() for d in turn.differential] == ["asthma", "pe", "pneumonia", "pericarditis"]
    assert turn.problems == ()


def test_a_differential_list_ranks_after_the_diagnosis() -> None:
    turn = parse_doctor_text("Based on the ECG:\nDIAGNOSIS READY: STEMI\nDIFFERENTIAL:\n"
                             "1. Aortic dissection\n2. Pericarditis\n3. STEMI\n\nThank you.")
    assert turn.differential == ("STEMI", "Aortic dissection", "Pericarditis")
    turn = parse_doctor_text("DIAGNOSIS READY: Gout\nDifferential diagnosis: pseudogout; "
                             "septic arthritis, cellulitis")
    assert turn.differential == ("Gout", "pseudogout", "septic arthritis", "cellulitis")
    long = "; ".join(f"disease {i}" for i in range(8))
    turn = parse_doctor_text(f"DIAGNOSIS READY: Gout\nDIFFERENTIAL: {long}")
    assert len(turn.differential) == MAX_DIFFERENTIAL
    assert turn.problems == ("long_differential",)


TESTS = [
    ("REQUEST TEST: EKG", "ecg"),
    ("REQUEST TEST: Complete_Blood_Count", "cbc"),
    ("request test: chest x-ray (PA and lateral).", "chest_xray"),
    ("Request Test - CXR", "chest_xray"),
    ("**REQUEST TEST:** Troponin", "troponin"),
    ("REQUEST TEST: urea and electrolytes", "bmp"),
    ("REQUEST TEST: CBC to check for infection", "cbc"),
    ("REQUEST TEST: ECG - to look for ischaemia", "ecg"),
    ("REQUEST TEST: Chest X-ray. I want to rule out pneumonia.", "chest_xray"),
    ("REQUEST TEST: I'd like to order a lipase level", "lipase"),
    ("Thank you. Let me check your blood first.\nREQUEST TEST: Complete blood count",
     "cbc"),
    ("REQUESTED TESTS: head CT", "ct_head"),
    ("REQUEST TEST: I\u2019d like a D-dimer, please", "d_dimer"),
]


@pytest.mark.parametrize(("text", "test"), TESTS)
def test_test_requests(text: str, test: str) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "order_test"
    assert turn.test == test
    assert turn.problems == ()


def test_every_vocabulary_name_orders_its_test() -> None:
    for name, info in TEST_VOCABULARY.items():
        for alias in (name, info.label, *info.aliases):
            turn = parse_doctor_text(f"REQUEST TEST: {alias}.")
            assert (turn.action, turn.test, turn.problems) == ("order_test", name, ()), alias


@pytest.mark.parametrize(("text", "first", "dropped"), [
    ("REQUEST TEST: CBC, chest X-ray and ECG", "cbc", ("chest X-ray", "ECG")),
    ("REQUEST TEST: Troponin\nREQUEST TEST: D-dimer", "troponin", ("D-dimer",)),
    ("REQUEST TEST: lipase + LFTs", "lipase", ("LFTs",)),
    ("REQUEST TEST: urea and electrolytes; CBC", "bmp", ("CBC",)),
])
def test_several_tests_carry_out_the_first(text: str, first: str, dropped: tuple) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "order_test" and turn.test == first
    assert turn.dropped == dropped
    assert turn.problems == ("multiple_tests",)


@pytest.mark.parametrize("request_text", [
    "CT scan of the head without contrast", "Lumbar puncture with opening pressure",
    "Joint aspiration of the right knee", "Stool for C. difficile toxin",
    "Doppler ultrasound of the legs", "Sputum AFB smear x3", "Anti-TPO antibodies",
    "Colonoscopy with biopsies", "Urinalysis with microscopy",
    "Complete blood count (CBC) with differential", "Blood cultures x2", "Fasting blood glucose",
    "MRI of the brain with gadolinium", "Serial troponins", "HIV RNA PCR", "QuantiFERON-TB Gold",
    "Influenza A/B PCR", "Thick and thin blood smears for malaria",
    "CT abdomen and pelvis with contrast", "Urine culture and sensitivity",
    "MRI brain with and without contrast"])
def test_ordinary_requests_with_extra_words_get_the_case_result(library, request_text) -> None:
    turn = parse_doctor_text(f"REQUEST TEST: {request_text}")
    assert turn.action == "order_test" and turn.test is not None, turn
    assert not turn.dropped and "multiple_tests" not in turn.problems
    cases = [c for c in library if turn.test in c.tests]
    assert cases, turn.test
    reply = measurement_reply(cases[0], request_text)
    assert NORMAL_READINGS not in reply, reply


@pytest.mark.parametrize(("text", "first", "dropped"), [
    ("REQUEST TEST: CBC and blood cultures x2", "cbc", ("blood cultures x2",)),
    ("REQUEST TEST: CT scan of the head and lumbar puncture", "ct_head", ("lumbar puncture",)),
])
def test_several_tests_with_extra_words_still_split(text: str, first: str,
                                                    dropped: tuple) -> None:
    turn = parse_doctor_text(text)
    assert (turn.test, turn.dropped) == (first, dropped)


def test_an_unknown_test_is_kept_as_text_and_counted() -> None:
    turn = parse_doctor_text("REQUEST TEST: Serum unobtainium level")
    assert turn.action == "order_test" and turn.test is None
    assert turn.request == "Serum unobtainium level"
    assert turn.problems == ("unknown_test",)


@pytest.mark.parametrize(("text", "system"), [
    ("REQUEST EXAM: cardiovascular", "cardiovascular"),
    ("REQUEST EXAM: lungs", "respiratory"),
    ("Request examination: abdomen.", "abdominal"),
    ("REQUEST PHYSICAL EXAM: lymph nodes", "lymph_nodes"),
    ("REQUEST EXAM:", WHOLE_EXAMINATION),
    ("REQUEST EXAM: full physical examination", WHOLE_EXAMINATION),
    ("REQUEST TEST: cardiovascular examination", "cardiovascular"),
    ("REQUEST TEST: Physical exam", WHOLE_EXAMINATION),
    ("REQUEST TEST: neurological exam", "neurological"),
    ("REQUEST TEST: vital signs", "general"),
])
def test_examinations(text: str, system: str) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "examine" and turn.system == system
    assert turn.problems == ()


@pytest.mark.parametrize(("request_text", "system"), [
    ("pulse oximetry", "general"), ("SpO2", "general"), ("oxygen saturation", "general"),
    ("blood pressure", "general"), ("temperature", "general"), ("O2 sats", "general"),
    ("fundoscopic examination", "heent"), ("funduscopic exam", "heent"),
    ("ophthalmoscopy", "heent"), ("visual fields", "heent"),
])
def test_vital_signs_and_eye_examinations_ordered_as_tests_are_examinations(
        library, request_text: str, system: str) -> None:
    turn = parse_doctor_text(f"REQUEST TEST: {request_text}")
    assert (turn.action, turn.system, turn.problems) == ("examine", system, ())
    if system == "general":
        case = next(c for c in library if c.examination.vital_signs.oxygen_saturation_pct)
        assert "oxygen saturation" in examination_reply(case, turn.system)
    else:
        case = next(c for c in library if "papilloedema" in
                    c.examination.findings.get("heent", ""))
        assert "papilloedema" in examination_reply(case, turn.system)


def test_examination_problems() -> None:
    turn = parse_doctor_text("REQUEST EXAM: heart and lungs")
    assert (turn.system, turn.problems) == ("cardiovascular", ("multiple_tests",))
    turn = parse_doctor_text("REQUEST EXAM: tongue")
    assert (turn.action, turn.system, turn.problems) == ("examine", None, ("unknown_system",))
    assert normalise_system("HEENT") == "heent" and normalise_system("spleen") is None
    assert all(normalise_system(s) == s for s in EXAM_SYSTEMS)


@pytest.mark.parametrize(("text", "symptoms"), [
    ("Do you have any fever, cough or shortness of breath?",
     ("fever", "cough", "shortness_of_breath")),
    ("Hello, I'm Dr. Lee. What brings you in today?", ()),
    ("**Have you noticed any chest pain that is worse when breathing in?**",
     ("pleuritic_chest_pain", "chest_pain")),
    ("tell me about your headaches", ("headache",)),
    ("I'm not diagnosis ready yet. Any recent travel?", ()),
])
def test_questions(text: str, symptoms: tuple) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == "ask"
    assert "*" not in turn.question and turn.question
    assert turn.symptoms == symptoms
    assert turn.problems == ()


@pytest.mark.parametrize(("text", "action", "problems"), [
    # a diagnosis wins over a test (AgentClinic checks DIAGNOSIS READY first)
    ("REQUEST TEST: Troponin. DIAGNOSIS READY: NSTEMI", "diagnose", ("mixed_protocol",)),
    ("DIAGNOSIS READY: Pneumonia\nREQUEST TEST: chest X-ray", "diagnose", ("mixed_protocol",)),
    ("DIAGNOSIS READY: PE. Do you have any questions?", "diagnose", ("mixed_protocol",)),
    ("DIAGNOSIS READY: Pneumonia\nREQUEST EXAM: chest", "diagnose", ("mixed_protocol",)),
    # a request wins over a question
    ("How long have you had the chest pain? REQUEST TEST: ECG", "order_test",
     ("mixed_protocol",)),
    ("Any allergies? REQUEST EXAM: skin", "examine", ("mixed_protocol",)),
    # both at once
    ("Does it hurt? REQUEST TEST: CBC, ECG\nDIAGNOSIS READY: maybe gout or pseudogout",
     "diagnose", ("mixed_protocol", "hedged_diagnosis")),
    ("DIAGNOSIS READY: Gout\nDIAGNOSIS READY: Pseudogout", "diagnose",
     ("multiple_diagnoses",)),
    # tags with no name are ignored; the rest decides
    ("DIAGNOSIS READY:", "do_nothing", ("diagnosis_without_name",)),
    ("REQUEST TEST:", "do_nothing", ("test_without_name",)),
    ("DIAGNOSIS READY: **  **\nREQUEST TEST: ECG", "order_test", ("diagnosis_without_name",)),
    ("Do you smoke?\nREQUEST TEST:", "ask", ("test_without_name",)),
    # explanation around a tag is not a question
    ("Thank you. Let me check your blood. REQUEST TEST: CBC. Thanks.", "order_test", ()),
    ("DIAGNOSIS READY: Pulmonary embolism. We will start treatment.", "diagnose", ()),
    # empty
    ("", "do_nothing", ("empty",)),
    ("   \n\t", "do_nothing", ("empty",)),
    ("****", "do_nothing", ("empty",)),
    (None, "do_nothing", ("empty",)),
])
def test_mixed_and_broken_answers(text: str | None, action: str, problems: tuple) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == action
    assert turn.problems == problems
    assert set(turn.problems) <= set(PROBLEMS)


@pytest.mark.parametrize(("text", "action"), [
    ("I will say DIAGNOSIS READY once I have the results. REQUEST TEST: ECG", "order_test"),
    ("Before the DIFFERENTIAL and DIAGNOSIS READY, REQUEST TEST: troponin", "order_test"),
    ("I need an ECG first; then I will REQUEST TEST results. Any chest pain?", "ask"),
    ("DIAGNOSIS READY Pneumonia", "diagnose"),
    ("Thank you.\n  DIAGNOSIS READY Pneumonia", "diagnose"),
    ("**DIAGNOSIS READY** Pneumonia", "diagnose"),
    ("REQUEST TEST ECG", "order_test"),
])
def test_a_capitalised_tag_without_colon_counts_only_at_the_start_of_a_line(
        text: str, action: str) -> None:
    turn = parse_doctor_text(text)
    assert turn.action == action and "mixed_protocol" not in turn.problems, turn


def test_the_diagnosis_of_a_mixed_answer_is_the_diagnosis() -> None:
    turn = parse_doctor_text("REQUEST TEST: Troponin\nDIAGNOSIS READY: NSTEMI")
    assert (turn.diagnosis, turn.test) == ("NSTEMI", None)


def test_turn_constructors_and_codes() -> None:
    assert DOCTOR_ACTIONS == ("do_nothing", "ask", "examine", "order_test", "diagnose")
    assert DoctorTurn.order("12-lead EKG").test == "ecg"
    assert DoctorTurn.order("frobnicate").problems == ("unknown_test",)
    assert DoctorTurn.examine().system == WHOLE_EXAMINATION
    assert DoctorTurn.ask("Any fever?").symptoms == ("fever",)
    assert [DoctorTurn.nothing().code, DoctorTurn.diagnose("Gout").code] == [0, 4]
    with pytest.raises(ValueError, match="question"):
        DoctorTurn.ask("  ")
    with pytest.raises(ValueError, match="unknown doctor action"):
        DoctorTurn("prescribe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="problem codes"):
        DoctorTurn("ask", question="x", problems=("rude",))


# -- rendering ---------------------------------------------------------------------------------

ROUND_TRIP = [
    DoctorTurn.ask("Do you have any chest pain?"),
    DoctorTurn.order("ecg"),
    DoctorTurn.order("bmp"),
    DoctorTurn.order("Serum unobtainium"),
    DoctorTurn.examine("lymph_nodes"),
    DoctorTurn.examine("heent"),
    DoctorTurn.examine(),
    DoctorTurn.diagnose("Pulmonary embolism"),
    DoctorTurn.diagnose("Gout", ["Pseudogout", "Septic arthritis"]),
    DoctorTurn.diagnose("maybe gout or pseudogout"),
]


@pytest.mark.parametrize("turn", ROUND_TRIP, ids=lambda t: t.action)
def test_rendered_turns_parse_back(turn: DoctorTurn) -> None:
    again = parse_doctor_text(doctor_text(turn))
    assert again.action == turn.action
    assert (again.test, again.system, again.diagnosis, again.differential, again.symptoms) == \
        (turn.test, turn.system, turn.diagnosis, turn.differential, turn.symptoms)
    assert again.problems == turn.problems


def test_render_turn(library) -> None:
    case = library[0]
    turn = DoctorTurn.order("EKG")
    text = render_turn(turn, measurement_reply(case, turn.request))
    doctor, reply = text.split("\n")
    assert doctor == "Doctor: REQUEST TEST: 12-lead electrocardiogram"
    assert reply.startswith("Measurement: RESULTS: 12-lead electrocardiogram: ")
    assert render_turn(DoctorTurn.ask("Any fever?"), "No.") == "Doctor: Any fever?\nPatient: No."
    assert render_turn(DoctorTurn.nothing("empty")) == "Doctor: (no answer)"
    verdict = render_turn(DoctorTurn.diagnose("Gout"), "incorrect")
    assert verdict == "Doctor: DIAGNOSIS READY: Gout\nModerator: incorrect"


# -- the structured decision ---------------------------------------------------------------

def test_decision_schema_validates_a_sample_and_rejects_long_fields() -> None:
    schema = DoctorDecision.model_json_schema()
    sample = {"reasoning": "Pleuritic pain and tachycardia after a flight.",
              "action": "order_test", "test": "CT pulmonary angiogram"}
    jsonschema.validate(sample, schema)
    decision = DoctorDecision.model_validate(sample)
    assert decision.to_turn().test == "ct_angiogram_chest"
    too_long = {**sample, "reasoning": "x" * (MAX_REASONING + 1)}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(too_long, schema)
    with pytest.raises(ValidationError):
        DoctorDecision.model_validate(too_long)
    many = {"action": "diagnose", "diagnosis": "Gout",
            "differential": [f"d{i}" for i in range(MAX_DIFFERENTIAL)]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(many, schema)
    with pytest.raises(ValidationError):
        DoctorDecision.model_validate(many)
    for bad in ({"action": "prescribe"}, {"action": "ask", "question": "x", "mood": "calm"},
                {"action": "examine", "system": "spleen"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ValidationError):
            DoctorDecision.model_validate(bad)


@pytest.mark.parametrize("decision", [
    {"action": "ask"}, {"action": "ask", "question": "  "}, {"action": "order_test"},
    {"action": "diagnose", "diagnosis": ""},
])
def test_decision_needs_the_argument_of_its_action(decision: dict) -> None:
    with pytest.raises(ValidationError, match="needs a non-empty"):
        DoctorDecision.model_validate(decision)


@pytest.mark.parametrize(("decision", "expected"), [
    ({"action": "ask", "question": "Any cough?", "test": "ignored"},
     {"action": "ask", "symptoms": ("cough",), "problems": ()}),
    ({"action": "ask", "question": "REQUEST TEST: ECG"},
     {"action": "ask", "problems": ("mixed_protocol",)}),
    ({"action": "examine"}, {"action": "examine", "system": WHOLE_EXAMINATION}),
    ({"action": "examine", "system": "neck"}, {"action": "examine", "system": "neck"}),
    ({"action": "order_test", "test": "CBC and ECG"},
     {"test": "cbc", "dropped": ("ECG",), "problems": ("multiple_tests",)}),
    ({"action": "order_test", "test": "unobtainium"},
     {"test": None, "problems": ("unknown_test",)}),
    ({"action": "order_test", "test": "**"}, {"action": "do_nothing",
                                              "problems": ("test_without_name",)}),
    ({"action": "diagnose", "diagnosis": "Likely gout", "differential": ["Pseudogout", "gout"]},
     {"diagnosis": "gout", "differential": ("gout", "Pseudogout"), "problems": ()}),
    ({"action": "diagnose", "diagnosis": "gout or pseudogout"},
     {"differential": ("gout", "pseudogout"), "problems": ("hedged_diagnosis",)}),
    ({"action": "diagnose", "diagnosis": "**"},
     {"action": "do_nothing", "problems": ("diagnosis_without_name",)}),
])
def test_decisions_become_turns(decision: dict, expected: dict) -> None:
    turn = DoctorDecision.model_validate(decision).to_turn()
    assert {key: getattr(turn, key) for key in expected} == expected


# -- the measurement agent -------------------------------------------------------------------

def test_measurement_replies(library) -> None:
    for case in library:
        for name, result in case.tests.items():
            label = TEST_VOCABULARY[name].label
            assert measurement_reply(case, name) == f"RESULTS: {label}: {result.result}"
        unlisted = next(n for n in TEST_VOCABULARY if n not in case.tests)
        assert measurement_reply(case, TEST_VOCABULARY[unlisted].aliases[0] + ".") == \
            f"RESULTS: {TEST_VOCABULARY[unlisted].label}: {NORMAL_READINGS}"
    case = library[0]
    assert measurement_reply(case, "**Serum unobtainium**") == \
        f"RESULTS: Serum unobtainium: {NORMAL_READINGS}"
    with pytest.raises(ValueError, match="test name"):
        measurement_reply(case, " ** ")


def test_measurement_reply_for_an_imported_case_test(library) -> None:
    case = library[0].model_copy(update={"case_tests": {
        "Serum unobtainium": TestResult(result="42 units (high)", abnormal=True)}})
    assert measurement_reply(case, "serum unobtainium") == \
        "RESULTS: Serum unobtainium: 42 units (high)"


def test_examination_replies(library) -> None:
    case = next(c for c in library if "cardiovascular" in c.examination.findings)
    reply = examination_reply(case, "cardiovascular")
    assert reply == ("RESULTS: Cardiovascular examination: "
                     f"{case.examination.findings['cardiovascular']}")
    missing = next(s for s in EXAM_SYSTEMS if s not in case.examination.findings)
    assert examination_reply(case, missing).endswith(f"examination: {NORMAL_READINGS}")
    whole = examination_reply(case, WHOLE_EXAMINATION)
    assert whole.startswith("RESULTS:\nVital signs: temperature ")
    assert len(whole.splitlines()) == 2 + len(case.examination.findings)
    assert "vital signs: " in examination_reply(case, "general")
    unknown = examination_reply(case, None)
    assert "not understood" in unknown and NORMAL_READINGS not in unknown
    assert "cardiovascular" in unknown
    with pytest.raises(ValueError, match="examination system"):
        examination_reply(case, "spleen")


# -- personas --------------------------------------------------------------------------------

def test_all_72_combinations_and_their_indexes() -> None:
    personas = all_personas()
    assert len(personas) == N_PERSONAS == 72 == len(set(personas))
    assert [p.index for p in personas] == list(range(72))
    assert all(Persona.from_index(i) == p for i, p in enumerate(personas))
    codes = persona_from_index(np.arange(72))
    again = persona_index(codes["personality"], codes["language"], codes["recall"],
                          codes["dazed"])
    np.testing.assert_array_equal(again, np.arange(72))
    names = persona_index(np.array([p.personality for p in personas]),
                          np.array([p.language for p in personas]),
                          np.array([p.recall for p in personas]),
                          np.array(["dazed" if p.dazed else "clear" for p in personas]))
    np.testing.assert_array_equal(names, np.arange(72))


def test_persona_validation() -> None:
    assert Persona() == Persona(personality="plain", language="advanced", recall="high",
                                dazed=False)
    with pytest.raises(ValidationError):
        Persona(personality="grumpy")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Persona(recall="medium")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Persona(mood="calm")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown personality 'grumpy'"):
        persona_arrays(np.array(["plain", "grumpy"]), 0, 0, False)
    with pytest.raises(ValueError, match="language: codes must lie in 0..2"):
        persona_arrays(0, np.array([3]), 0, False)
    with pytest.raises(ValueError, match="persona indexes"):
        persona_from_index(72)


def test_persona_arrays_shapes_ranges_and_determinism() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    p = rng.integers(0, len(PERSONALITIES), n)
    lang = rng.integers(0, len(LANGUAGE_LEVELS), n)
    r = rng.integers(0, len(RECALL_LEVELS), n)
    d = rng.random(n) < 0.3
    arrays = persona_arrays(p, lang, r, d)
    assert set(arrays) == set(BEHAVIOUR) == set(RANGES)
    for name, values in arrays.items():
        low, high = RANGES[name]
        assert values.shape == (n,) and values.dtype == np.float64, name
        assert np.all((values >= low) & (values <= high)), name
    again = persona_arrays(p, lang, r, d)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    subset = np.flatnonzero(rng.random(n) < 0.1)
    part = persona_arrays(p[subset], lang[subset], r[subset], d[subset])
    assert all(np.array_equal(arrays[k][subset], part[k]) for k in arrays)
    named = persona_arrays(np.asarray(PERSONALITIES)[p], np.asarray(LANGUAGE_LEVELS)[lang],
                           np.asarray(RECALL_LEVELS)[r], d)
    assert all(np.array_equal(arrays[k], named[k]) for k in arrays)
    grid = persona_arrays(np.arange(6)[:, None], 2, 1, np.array([False, True])[None, :])
    assert grid["miss_rate"].shape == (6, 2)
    one = Persona(personality="distrustful", recall="low", dazed=True).behaviour()
    assert one == {k: float(v[0]) for k, v in
                   persona_arrays(np.array([2]), np.array([2]), np.array([0]),
                                  np.array([True])).items()}


def test_persona_behaviour_goes_the_documented_way() -> None:
    every = persona_from_index(np.arange(72))
    arrays = persona_arrays(every["personality"], every["language"], every["recall"],
                            every["dazed"])
    low = every["recall"] == 0
    same = {k: v for k, v in every.items() if k != "recall"}
    high_twin = persona_index(**{**same, "recall": np.ones(72, dtype=np.int64)})
    assert np.all(arrays["miss_rate"][low] > arrays["miss_rate"][high_twin[low]])
    dazed = every["dazed"]
    assert np.all(arrays["wrong_rate"][dazed] > arrays["wrong_rate"][np.flatnonzero(dazed) - 1])
    assert np.all(arrays["confidence_bias"] > 0)
    unbiased = confidence_after(arrays, turns=8, tests=2)
    biased = confidence_after(arrays, turns=8, tests=2, bias_turns=8.0)
    assert np.all(biased < unbiased) and np.all((biased >= 0) & (unbiased <= 1))
    distrustful = every["personality"] == PERSONALITIES.index("distrustful")
    pleasing = every["personality"] == PERSONALITIES.index("pleasing")
    assert arrays["confidence0"][distrustful].max() < arrays["confidence0"][pleasing].min()
    drop = unbiased - biased
    assert drop[distrustful].min() > drop[pleasing].max()


def test_persona_texts() -> None:
    texts = [persona_text(p) for p in all_personas()]
    assert len(set(texts)) == 72
    assert texts == [persona_text(i) for i in range(72)]
    for persona, text in zip(all_personas(), texts, strict=True):
        assert NO_DIAGNOSIS_INSTRUCTION in text and FIDELITY_INSTRUCTION in text
        assert "\n" not in text and len(text) < 1200
        assert persona.text() == text
    assert "dazed" in persona_text(Persona(dazed=True))
    assert "basic" in persona_text(Persona(language="basic"))
