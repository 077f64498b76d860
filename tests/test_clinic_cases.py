"""The clinic's case library: the shipped cases load and keep the library's rules, broken case
files are reported by file, case id and field, test names and diagnoses normalise and match
(with near misses that must not), the measurement rule, and the AgentClinic importer."""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from populace.scenarios.clinic import vocabulary as vocab
from populace.scenarios.clinic.agentclinic import import_agentclinic
from populace.scenarios.clinic.cases import (
    CASES_DIR,
    NORMAL_RESULT,
    Case,
    CaseError,
    CaseLibrary,
    default_library,
    load_cases,
    result_of,
)
from populace.scenarios.clinic.diagnosis import (
    diagnosis_matches,
    normalise_diagnosis,
    rank_of_diagnosis,
)

SAMPLE = Path(__file__).parent / "data" / "agentclinic_sample.jsonl"


@pytest.fixture(scope="module")
def library() -> CaseLibrary:
    return default_library()


def raw_case(case_id: str = "card-05") -> dict[str, Any]:
    """A shipped case as the JSON it was read from (a fresh copy)."""
    case = default_library().get(case_id)
    return json.loads((CASES_DIR / case.specialty / f"{case.id}.json").read_text())


def made_case(diagnosis: str, synonyms: list[str] | None = None) -> Case:
    data = raw_case()
    data.update(diagnosis=diagnosis, synonyms=synonyms or [], differential=[])
    return Case.model_validate(data)


# -- the shipped library ----------------------------------------------------------------------


def test_the_shipped_library_has_enough_cases_and_specialties(library: CaseLibrary) -> None:
    assert len(library) >= 40
    specialties = library.specialties()
    assert len(specialties) >= 6 and all(n >= 2 for n in specialties.values())
    assert len(set(library.ids)) == len(library)
    assert load_cases(CASES_DIR).ids == library.ids  # default_library reads that folder


def test_each_case_file_is_named_after_its_id_and_specialty() -> None:
    files = sorted(CASES_DIR.rglob("*.json"))
    assert len(files) == len(default_library())
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert path.stem == data["id"] and path.parent.name == data["specialty"], path


def test_every_name_in_the_library_is_in_its_vocabulary(library: CaseLibrary) -> None:
    for case in library:
        assert set(case.tests) <= set(vocab.TEST_VOCABULARY), case.id
        assert set(case.symptom_keys) <= set(vocab.SYMPTOM_VOCABULARY), case.id
        assert set(case.examination.findings) <= set(vocab.EXAM_SYSTEMS), case.id
        assert case.specialty in vocab.SPECIALTIES and case.specialty != "unspecified"
        assert case.case_tests == {} and case.source == "populace"
    # the library uses most of the vocabulary: the vocabulary is not padding
    used = {name for case in library for name in case.tests}
    assert len(used) >= 0.9 * len(vocab.TEST_VOCABULARY)


def test_every_case_keeps_the_library_rules(library: CaseLibrary) -> None:
    for case in library:
        decisive = [n for n in case.decisive_tests() if case.tests[n].abnormal]
        assert decisive, f"{case.id} has no abnormal decisive test"
        assert len(case.tests) >= 4 and any(not r.abnormal for r in case.tests.values()), case.id
        vitals = case.examination.vital_signs.model_dump()
        assert None not in vitals.values(), case.id
        assert case.difficulty in ("easy", "medium", "hard")
        assert case.patient.demographics.age is not None and case.patient.demographics.sex
        assert len(case.differential) >= 2 and case.synonyms


def test_the_diagnosis_is_not_given_away(library: CaseLibrary) -> None:
    # neither the doctor's objective nor the patient's complaint names the diagnosis, and ids
    # are neutral
    for case in library:
        told = " ".join([case.objective, case.patient.primary_symptom,
                         *case.patient.secondary_symptoms]).lower()
        for name in [case.diagnosis, *case.synonyms]:
            words = normalise_diagnosis(name)
            assert not (len(words) > 4 and words in told), (case.id, name)
        assert re.fullmatch(r"[a-z]+-\d\d", case.id), case.id


def test_diagnoses_are_not_trivial(library: CaseLibrary) -> None:
    # common complaints lead to several diagnoses
    by_symptom: dict[str, set[str]] = defaultdict(set)
    for case in library:
        for key in case.symptom_keys:
            by_symptom[key].add(normalise_diagnosis(case.diagnosis))
    for complaint in ("chest_pain", "fever", "headache", "abdominal_pain",
                      "shortness_of_breath", "fatigue", "confusion"):
        assert len(by_symptom[complaint]) >= 3, complaint
    # ... and yet no two cases with different diagnoses look the same to a rule doctor
    seen: dict[tuple[frozenset[str], frozenset[str]], str] = {}
    for case in library:
        sign = (frozenset(case.symptom_keys), frozenset(case.abnormal_tests()))
        other = seen.setdefault(sign, case.diagnosis)
        assert normalise_diagnosis(other) == normalise_diagnosis(case.diagnosis), case.id
    # some diagnoses come back with another presentation, for the likelihood table
    counts = defaultdict(int)
    for case in library:
        counts[normalise_diagnosis(case.diagnosis)] += 1
    assert max(counts.values()) >= 2


def test_names_within_a_case_are_consistent(library: CaseLibrary) -> None:
    for case in library:
        assert diagnosis_matches(case.diagnosis, case)
        assert all(diagnosis_matches(s, case) for s in case.synonyms), case.id
        assert not any(diagnosis_matches(d, case) for d in case.differential), case.id


def test_the_library_is_a_sequence_that_filters(library: CaseLibrary) -> None:
    cardiology = library.filter(specialty="cardiology")
    assert isinstance(cardiology, CaseLibrary) and len(cardiology) >= 3
    assert {c.specialty for c in cardiology} == {"cardiology"}
    hard = library.filter(difficulty=["hard"], specialty=["neurology", "emergency"])
    assert hard and {c.difficulty for c in hard} == {"hard"}
    assert library[0].id == library.ids[0] and len(library[:3]) == 3
    assert "card-01" in library and library[0] in library and "nope" not in library
    assert library.diagnoses().count("pulmonary embolism") == 1
    with pytest.raises(KeyError, match="no case 'nope'"):
        library.get("nope")
    with pytest.raises(CaseError, match="'card-01' is used more than once"):
        CaseLibrary([library.get("card-01"), library.get("card-01")])


# -- broken case files ------------------------------------------------------------------------


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_broken_case_files_are_reported_by_file_case_and_field(tmp_path: Path) -> None:
    good = raw_case("card-01")

    alias = copy.deepcopy(good) | {"id": "bad-alias"}
    alias["tests"]["EKG"] = alias["tests"].pop("ecg")
    write(tmp_path / "alias.json", alias)

    extra = copy.deepcopy(good) | {"id": "bad-extra"}
    extra["patient"]["smoker"] = True
    write(tmp_path / "extra.json", extra)

    lines = []
    missing = copy.deepcopy(good) | {"id": "bad-missing"}
    del missing["diagnosis"]
    lines.append(missing)
    symptom = copy.deepcopy(good) | {"id": "bad-symptom"}
    symptom["patient"]["symptom_keys"] = ["chest_pain", "heart_burning"]
    lines.append(symptom)
    implied = copy.deepcopy(good) | {"id": "bad-implied"}
    implied["patient"]["symptom_keys"] = ["pleuritic_chest_pain"]
    lines.append(implied)
    (tmp_path / "more.jsonl").write_text(
        "\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")

    vitals = copy.deepcopy(good) | {"id": "bad-vitals"}
    vitals["examination"]["vital_signs"].update(diastolic_bp_mmhg=160, heart_rate_bpm="fast")
    write(tmp_path / "vitals.json", vitals)

    nothing = copy.deepcopy(good) | {"id": "bad-decisive"}
    for result in nothing["tests"].values():
        result["decisive"] = False
    write(tmp_path / "decisive.json", nothing)

    differential = copy.deepcopy(good) | {"id": "bad-differential", "differential": ["STEMI"]}
    write(tmp_path / "differential.json", differential)

    unknown = copy.deepcopy(good) | {"id": "bad-unknown", "specialty": "astrology"}
    unknown["tests"]["tricorder"] = {"result": "x", "abnormal": True}
    write(tmp_path / "unknown.json", unknown)

    write(tmp_path / "zz_repeat.json", copy.deepcopy(good) | {"id": "bad-alias"})
    write(tmp_path / "zz_same.json", copy.deepcopy(good) | {"id": "twice"})
    write(tmp_path / "zz_same2.json", copy.deepcopy(good) | {"id": "twice"})
    (tmp_path / "syntax.json").write_text('{"id": "broken",', encoding="utf-8")

    with pytest.raises(CaseError) as caught:
        load_cases(tmp_path)
    problems = caught.value.problems
    text = str(caught.value)
    assert f"{len(problems)} problems in the case files" in text

    def one(pattern: str) -> str:
        found = [p for p in problems if re.search(pattern, p)]
        assert len(found) == 1, (pattern, problems)
        return found[0]

    one(r"alias\.json: case 'bad-alias': tests\.EKG \(the key\): 'EKG' is not a canonical "
        r"test name: write 'ecg'")
    one(r"extra\.json: case 'bad-extra': patient\.smoker: Extra inputs are not permitted")
    one(r"more\.jsonl:1: case 'bad-missing': diagnosis: Field required")
    one(r"more\.jsonl:2: case 'bad-symptom': patient\.symptom_keys\[1\]: unknown symptom "
        r"key 'heart_burning'")
    one(r"more\.jsonl:3: case 'bad-implied': patient\.symptom_keys: .*implied but not "
        r"listed: chest_pain")
    one(r"vitals\.json: case 'bad-vitals': examination\.vital_signs\.heart_rate_bpm: ")
    one(r"decisive\.json: case 'bad-decisive': tests: no test is both abnormal and decisive")
    one(r"differential\.json: case 'bad-differential': .*differential entry 'STEMI' matches "
        r"the diagnosis")
    one(r"unknown\.json: case 'bad-unknown': specialty: .*unknown specialty 'astrology'")
    one(r"unknown\.json: case 'bad-unknown': tests\.tricorder \(the key\): unknown test "
        r"'tricorder'")
    one(r"zz_repeat\.json: case 'bad-alias': id: already used by the case in .*alias\.json")
    one(r"zz_same2\.json: case 'twice': id: already used by the case in .*zz_same\.json")
    one(r"syntax\.json: not valid JSON")
    assert len(problems) == 13

    # the diastolic pressure is checked once the types are right
    vitals["examination"]["vital_signs"]["heart_rate_bpm"] = 90
    write(tmp_path / "vitals.json", vitals)
    with pytest.raises(CaseError, match="vital_signs: .*diastolic_bp_mmhg must be below"):
        load_cases(tmp_path / "vitals.json")


def test_a_missing_path_and_a_good_file_of_cases(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no case file or folder"):
        load_cases(tmp_path / "nowhere")
    write(tmp_path / "two.json", [raw_case("card-01"), raw_case("gi-01")])
    assert load_cases(tmp_path / "two.json").ids == ["card-01", "gi-01"]


# -- test names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "canonical"), [
    ("CBC", "cbc"), ("complete blood count", "cbc"), ("Complete_Blood_Count", "cbc"),
    ("Full Blood Count", "cbc"), ("ECG", "ecg"), ("EKG", "ecg"), ("electrocardiogram", "ecg"),
    ("12-lead ECG", "ecg"), ("ecg", "ecg"), ("CXR", "chest_xray"), ("Chest X-Ray", "chest_xray"),
    ("chest x ray", "chest_xray"), ("chest radiograph", "chest_xray"), ("Head CT", "ct_head"),
    ("CT scan of the head", "ct_head"), ("CTPA", "ct_angiogram_chest"), ("LFTs", "lft"),
    ("Liver_Function_Tests", "lft"), ("blood cultures", "blood_culture"),
    ("Serum Electrolytes", "bmp"), ("U&E", "bmp"), ("troponin I level", "troponin"),
    ("β-hCG", "pregnancy_test"), ("urine beta-hCG", "pregnancy_test"), ("TFTs", "tsh"),
    ("Thyroid Function Tests", "tsh"), ("Echo", "echocardiogram"), ("LP", "lumbar_puncture"),
    ("spinal tap", "lumbar_puncture"), ("EGD", "upper_endoscopy"), ("HbA1c", "hba1c"),
    ("Haemoglobin A1c", "hba1c"), ("REQUEST TEST: D-dimer", "d_dimer"), ("ESR", "esr"),
    ("anti-dsDNA antibodies", "anti_dsdna"), ("Electromyography", "nerve_conduction_study"),
    ("Acetylcholine_Receptor_Antibodies", "achr_antibodies"), ("urinalysis", "urinalysis"),
])
def test_test_names_normalise(name: str, canonical: str) -> None:
    assert vocab.normalise_test(name) == canonical


REQUESTS_WITH_EXTRA_WORDS = [
    ("CT scan of the head without contrast", "ct_head"),
    ("Lumbar puncture with opening pressure", "lumbar_puncture"),
    ("Joint aspiration of the right knee", "synovial_fluid_analysis"),
    ("Stool for C. difficile toxin", "c_diff_toxin"), ("Doppler ultrasound of the legs", "leg_doppler"),
    ("Sputum AFB smear x3", "sputum_afb"), ("Anti-TPO antibodies", "thyroid_antibodies"),
    ("Colonoscopy with biopsies", "colonoscopy"), ("Urinalysis with microscopy", "urinalysis"),
    ("Complete blood count (CBC) with differential", "cbc"), ("Blood cultures x2", "blood_culture"),
    ("Fasting blood glucose", "glucose"), ("MRI of the brain with gadolinium", "mri_brain"),
    ("Serial troponins", "troponin"), ("HIV RNA PCR", "hiv_test"), ("QuantiFERON-TB Gold", "igra"),
    ("Influenza A/B PCR", "influenza_test"),
    ("Thick and thin blood smears for malaria", "malaria_smear"),
    ("CT abdomen and pelvis with contrast", "ct_abdomen"),
    ("Urine culture and sensitivity", "urine_culture"),
    ("MRI brain with and without contrast", "mri_brain"),
]


@pytest.mark.parametrize(("name", "canonical"), REQUESTS_WITH_EXTRA_WORDS)
def test_requests_with_extra_words_name_the_test_of_their_longest_alias(name: str,
                                                                         canonical: str) -> None:
    assert vocab.normalise_test(name) == canonical
    assert vocab.normalise_test(name, exact=True) is None


@pytest.mark.parametrize("name", ["CT", "MRI", "x-ray", "blood", "tricorder", "", "  ", "test",
                                  "scan please", "ultrasound", "CT scan", "MRI scan",
                                  "blood test", "MRI with contrast", "CT of the left side"])
def test_vague_or_unknown_test_names_do_not_normalise(name: str) -> None:
    assert vocab.normalise_test(name) is None


def test_the_test_vocabulary_is_complete_and_unambiguous() -> None:
    for name, info in vocab.TEST_VOCABULARY.items():
        assert name == info.name and re.fullmatch(r"[a-z0-9_]+", name)
        assert info.category in ("lab", "imaging", "bedside")
        assert info.turnaround_min > 0 and info.cost > 0 and info.label
        assert vocab.normalise_test(info.label) == name
        assert all(vocab.normalise_test(a) == name for a in info.aliases), name
    clash = (vocab.TestInfo("alpha", "Alpha", ("shared",), "lab", 1, 1.0),
             vocab.TestInfo("beta", "Beta", ("shared",), "lab", 1, 1.0))
    with pytest.raises(ValueError, match="'shared' would mean both 'alpha' and 'beta'"):
        vocab._build_test_index(clash)


def test_symptom_phrases_map_to_keys() -> None:
    assert vocab.normalise_symptom("Shortness of breath") == "shortness_of_breath"
    assert vocab.normalise_symptom("dyspnoea") == "shortness_of_breath"
    assert vocab.normalise_symptom("a strange feeling") is None
    found = vocab.find_symptoms("Sharp pleuritic chest pain, fever and coughing up blood")
    assert found == ["pleuritic_chest_pain", "fever", "hemoptysis", "chest_pain"]
    assert vocab.implied_symptoms(["malar_rash", "fever"]) == {"rash"}


def test_the_readme_documents_every_vocabulary_entry() -> None:
    readme = (CASES_DIR / "README.md").read_text(encoding="utf-8")
    missing = [n for n in [*vocab.TEST_VOCABULARY, *vocab.SYMPTOM_VOCABULARY]
               if f"`{n}`" not in readme]
    assert missing == []
    assert "not medical advice" in readme
    library = default_library()
    rows = dict(re.findall(r"^\| ([a-z_]+) \| (\d+) \|$", readme, flags=re.M))
    assert {k: int(v) for k, v in rows.items()} == library.specialties()
    assert f"{len(library)} cases in {len(library.specialties())} specialties" in readme


# -- diagnosis matching -----------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "diagnosis", "synonyms"), [
    ("Pulmonary embolism", "pulmonary embolism", []),
    ("Likely acute PE.", "pulmonary embolism", []),
    ("most likely diagnosis is pulmonary embolism (massive)", "pulmonary embolism", []),
    ("PULMONARY-EMBOLISM", "pulmonary embolism", []),
    ("T2DM", "type 2 diabetes mellitus", []),
    ("Type II diabetes", "type 2 diabetes mellitus", []),
    ("diabetes mellitus, type 2", "type 2 diabetes mellitus", []),
    ("Subarachnoid haemorrhage", "subarachnoid hemorrhage", []),
    ("coeliac disease", "celiac disease", []),
    ("Crohn's disease", "Crohn disease", []),
    ("Exacerbation of COPD", "COPD exacerbation", []),
    ("heart attack", "myocardial infarction", []),
    ("STEMI", "ST-elevation myocardial infarction", []),
    ("pancreatitis", "acute pancreatitis", []),
    ("Guillain-Barré syndrome", "Guillain-Barre syndrome", []),
    ("pneumonia", "community-acquired pneumonia", ["pneumonia"]),
    ("glandular fever", "infectious mononucleosis", []),
    ("hepatitis A", "acute hepatitis A", []),
])
def test_answers_that_match(answer: str, diagnosis: str, synonyms: list[str]) -> None:
    assert diagnosis_matches(answer, made_case(diagnosis, synonyms))


@pytest.mark.parametrize(("answer", "diagnosis", "synonyms"), [
    ("type 1 diabetes", "type 2 diabetes mellitus", []),
    ("T1DM", "type 2 diabetes mellitus", ["type 2 diabetes"]),
    ("diabetes", "type 2 diabetes mellitus", []),
    ("pneumonia", "community-acquired pneumonia", []),  # not listed: no match
    ("aspiration pneumonia", "community-acquired pneumonia", ["pneumonia"]),
    ("chronic pancreatitis", "acute pancreatitis", []),
    ("hypothyroidism", "hyperthyroidism", []),
    ("NSTEMI", "ST-elevation myocardial infarction", []),
    ("non-ST-elevation myocardial infarction", "ST-elevation myocardial infarction", []),
    ("viral meningitis", "bacterial meningitis", []),
    ("hemorrhagic stroke", "ischemic stroke", []),
    ("hepatitis B", "acute hepatitis A", []),
    ("hepatitis", "acute hepatitis A", []),
    ("pulmonary embolism or pneumonia", "pulmonary embolism", []),
    ("no pulmonary embolism", "pulmonary embolism", []),
    ("tension pneumothorax", "primary spontaneous pneumothorax", ["pneumothorax"]),
    ("", "pulmonary embolism", []),
    ("likely", "pulmonary embolism", []),
])
def test_near_misses_do_not_match(answer: str, diagnosis: str, synonyms: list[str]) -> None:
    assert not diagnosis_matches(answer, made_case(diagnosis, synonyms))


def test_normal_forms_and_ranks() -> None:
    assert normalise_diagnosis("Likely acute PE.") == "pulmonary embolism"
    assert normalise_diagnosis("T2DM") == normalise_diagnosis("type II diabetes mellitus")
    assert normalise_diagnosis("Crohn's disease") == "crohn disease"
    assert normalise_diagnosis("probable") == ""
    case = made_case("pulmonary embolism")
    assert rank_of_diagnosis(["pneumonia", "PE", "pericarditis"], case) == 2
    assert rank_of_diagnosis(["pneumonia"], case) is None


# -- measurement ------------------------------------------------------------------------------


def test_result_of_listed_unlisted_and_unknown_tests(library: CaseLibrary) -> None:
    case = library.get("card-01")
    listed = result_of(case, "EKG")
    assert listed.name == "ecg" and listed.abnormal and "ST-segment elevation" in listed.result
    name, text, abnormal = result_of(case, "Chest X-Ray")  # listed, normal
    assert (name, abnormal) == ("chest_xray", False) and text != NORMAL_RESULT
    assert result_of(case, "lipase") == ("lipase", NORMAL_RESULT, False)  # not listed
    assert result_of(case, "tricorder scan") == (None, NORMAL_RESULT, False)  # unknown


# -- the AgentClinic importer -----------------------------------------------------------------


def test_the_agentclinic_importer_maps_and_counts() -> None:
    cases = import_agentclinic(SAMPLE)
    assert [c.id for c in cases] == [f"agentclinic_sample-{i}" for i in (1, 2, 3)]
    assert all(c.specialty == "unspecified" and c.difficulty is None for c in cases)
    first, second, third = cases
    assert first.source == "agentclinic:agentclinic_sample.jsonl:1"
    assert (first.patient.demographics.age, first.patient.demographics.sex) == (52, "female")
    assert (second.patient.demographics.sex, third.patient.demographics.age) == ("male", 8)
    assert first.examination.vital_signs.temperature_c == 39.1  # 102.4 °F
    assert second.examination.vital_signs.oxygen_saturation_pct == 95
    assert (third.examination.vital_signs.systolic_bp_mmhg,
            third.examination.vital_signs.diastolic_bp_mmhg) == (98, 60)
    assert {"fever", "jaundice", "right_upper_quadrant_pain", "abdominal_pain"} <= set(
        first.symptom_keys)
    # vocabulary tests are found at any depth, under group keys
    assert {"cbc", "lft", "blood_culture", "lipase", "abdominal_ultrasound"} == set(first.tests)
    assert "Total Bilirubin: 4.2 mg/dL" in first.tests["lft"].result
    assert first.tests["blood_culture"].abnormal and not first.tests["lipase"].abnormal
    assert not third.tests["rapid_strep"].abnormal  # "Throat_Culture": "Negative"
    assert "MRCP" in first.case_tests and "Slit Lamp Examination" in third.case_tests
    troponin = second.tests["troponin"]  # Troponin_I and Troponin_T merged
    assert troponin.result == "Troponin I: 0.02 ng/mL; Troponin T: Normal"
    assert not any(r.decisive for c in cases for r in [*c.tests.values(),
                                                       *c.case_tests.values()])
    assert first.examination.findings["abdominal"].startswith("Inspection: Not distended")
    assert "Cardiac Auscultation: Tachycardia" in third.examination.findings["other"]

    report = cases.report
    assert report.cases == 3 and report.tests_mapped == 19 and report.merged_tests == 1
    assert report.case_specific_tests == {"MRCP": 1, "Slit Lamp Examination": 1}
    assert report.unparsed == {"vital_signs.Weight": 1, "exam.Cardiac Auscultation": 1}
    assert sum(report.unmapped_symptoms.values()) == 5
    assert "Irritability" in report.unmapped_symptoms
    summary = report.summary()
    assert "3 cases imported" in summary and "MRCP (1)" in summary

    # the imported cases work with the rest of the library's functions
    assert result_of(first, "mrcp") == ("MRCP", first.case_tests["MRCP"].result, True)
    assert result_of(first, "ECG") == ("ecg", NORMAL_RESULT, False)
    assert diagnosis_matches("Kawasaki disease", third)
    assert not diagnosis_matches("acute cholecystitis", first)


def test_the_agentclinic_importer_reports_every_bad_line(tmp_path: Path) -> None:
    good = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    no_diagnosis = copy.deepcopy(good)
    del no_diagnosis["OSCE_Examination"]["Correct_Diagnosis"]
    no_patient = {"OSCE_Examination": {"Correct_Diagnosis": "flu"}}
    bad_age = copy.deepcopy(good)
    bad_age["OSCE_Examination"]["Patient_Actor"]["Demographics"] = "a 130-year-old woman"
    path = tmp_path / "bring.jsonl"
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps(no_diagnosis), "",
                               json.dumps(no_patient), json.dumps(bad_age)]),
                    encoding="utf-8")
    with pytest.raises(CaseError) as caught:
        import_agentclinic(path)
    problems = caught.value.problems
    assert len(problems) == 3
    assert re.search(r"bring\.jsonl:2: not valid JSON", problems[0])
    assert re.search(r"bring\.jsonl:3: case 'bring-3': Correct_Diagnosis: missing", problems[1])
    assert re.search(r"bring\.jsonl:5: case 'bring-5': no OSCE_Examination with a "
                     r"Patient_Actor", problems[2])
    # an age it cannot believe is counted, not imported
    path.write_text(json.dumps(bad_age), encoding="utf-8")
    cases = import_agentclinic(path)
    assert cases[0].patient.demographics.age is None
    assert cases.report.unparsed["demographics.age"] == 1


# -- the importer names a result filed under a panel (issue 16 review) ------------------------


def test_the_agentclinic_importer_names_results_filed_under_a_panel(tmp_path: Path) -> None:
    line = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    line["OSCE_Examination"]["Test_Results"] = {
        "Blood_Tests": {"Hemoglobin": "13.5 g/dL", "CRP": "8 mg/L"},
        "Complete_Blood_Count": "Normal",  # merged into the CBC under its own name
        "Lipase": "Normal",  # the test's own name: no prefix
        "Troponin_I": "0.01 ng/mL",
    }
    path = tmp_path / "panel.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    case = import_agentclinic(path)[0]
    assert case.tests["cbc"].result == "Hemoglobin: 13.5 g/dL; Complete Blood Count: Normal"
    assert case.tests["lipase"].result == "Normal"
    assert case.tests["troponin"].result == "Troponin I: 0.01 ng/mL"
    assert case.tests["crp"].result == "8 mg/L"

    alone = copy.deepcopy(line)
    alone["OSCE_Examination"]["Test_Results"] = {"Blood_Tests": {"Hemoglobin": "13.5 g/dL"}}
    path.write_text(json.dumps(alone) + "\n", encoding="utf-8")
    assert import_agentclinic(path)[0].tests["cbc"].result == "Hemoglobin: 13.5 g/dL"


# -- case content agrees with its symptom keys (issue 16 review) ------------------------------


def test_no_keyed_symptom_is_denied_in_the_review_of_systems(library: CaseLibrary) -> None:
    denied = []
    for case in library:
        ros = case.patient.review_of_systems.lower()
        for key in case.patient.symptom_keys:
            info = vocab.SYMPTOM_VOCABULARY[key]
            names = {info.label, key.replace("_", " "), *info.aliases}
            denied += [(case.id, key, name) for name in names
                       if re.search(rf"\bno {re.escape(name.lower())}\b", ros)]
    assert denied == []


def test_keyed_symptoms_named_in_the_text(library: CaseLibrary) -> None:
    assert "back_pain" in library.get("card-03").patient.symptom_keys  # between the blades
    assert "orthopnea" in library.get("neuro-04").patient.symptom_keys  # breathless lying flat
    assert "chest_pain" in library.get("pulm-03").patient.symptom_keys  # a tight chest
