"""The clinic's normalised vocabularies and the functions that map free text onto them.

Core objects:
    TestInfo, TEST_VOCABULARY: every test a doctor can order (canonical name, label, aliases,
        category, turnaround time, illustrative cost).
    normalise_test: a free-text test name ("EKG", "Chest X-Ray", "complete blood count") to its
        canonical name, or None.
    SymptomInfo, SYMPTOM_VOCABULARY: the symptom keys a case lists as present (what a
        rule-based doctor asks about and builds its likelihood table from).
    normalise_symptom, find_symptoms: a symptom phrase to its key; every key whose phrase
        occurs in a text.
    EXAM_SYSTEMS, SPECIALTIES: the examination systems a case reports findings for and the
        specialties a case may belong to.

Costs are in illustrative units (``COST_UNIT``), set to look like plausible US dollar prices
so that cost per patient reads naturally; they are not real prices of any health system.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

COST_UNIT = "illustrative USD"
"""The unit of ``TestInfo.cost``: plausible-looking dollars, not real prices."""

TestCategory = Literal["lab", "imaging", "bedside"]

SPECIALTIES: tuple[str, ...] = (
    "cardiology", "pulmonology", "gastroenterology", "neurology", "infectious_disease",
    "endocrinology", "nephrology", "urology", "rheumatology", "hematology", "emergency",
    "unspecified",
)
"""Specialties a case may name; ``unspecified`` is for imported cases that carry none."""

EXAM_SYSTEMS: tuple[str, ...] = (
    "general", "heent", "neck", "cardiovascular", "respiratory", "abdominal", "genitourinary",
    "musculoskeletal", "neurological", "skin", "extremities", "lymph_nodes", "psychiatric",
    "other",
)
"""Keys of a case's examination findings (``heent``: head, eyes, ears, nose, throat)."""


@dataclass(frozen=True)
class TestInfo:
    """One orderable test.

    Attributes:
        name: the canonical name (lower-case, ``_`` between words): the key of a case's
            ``tests`` and what ``normalise_test`` returns.
        label: how a report or a prompt names it.
        aliases: other names, abbreviations and spellings that mean this test.
        category: ``lab`` (samples analysed in a laboratory), ``imaging`` (pictures of the
            body, endoscopies included) or ``bedside`` (done at the bedside: ECG, peak flow,
            point-of-care tests).
        turnaround_min: minutes from the order to the result.
        cost: price in ``COST_UNIT`` (illustrative).
    """

    __test__ = False  # not a pytest test class

    name: str
    label: str
    aliases: tuple[str, ...]
    category: TestCategory
    turnaround_min: int
    cost: float


def _t(name: str, label: str, category: TestCategory, minutes: int, cost: float,
       *aliases: str) -> TestInfo:
    return TestInfo(name, label, aliases, category, minutes, cost)


_TESTS: tuple[TestInfo, ...] = (
    # blood: haematology, chemistry, markers
    _t("cbc", "Complete blood count", "lab", 60, 15, "complete blood count",
       "full blood count", "fbc", "blood count", "hemogram", "cbc with differential",
       "white cell count", "wbc count", "hemoglobin", "haemoglobin", "platelet count",
       "platelets"),
    _t("bmp", "Basic metabolic panel (sodium, potassium, chloride, bicarbonate, urea, "
       "creatinine, glucose, calcium)", "lab", 60, 20, "basic metabolic panel",
       "electrolytes", "serum electrolytes", "urea and electrolytes", "u and e", "renal panel",
       "renal function tests", "kidney function tests", "chem 7", "creatinine",
       "comprehensive metabolic panel", "cmp", "calcium", "sodium", "potassium"),
    _t("lft", "Liver function tests", "lab", 90, 25, "liver function tests", "lfts",
       "hepatic panel", "liver panel", "liver enzymes", "transaminases", "bilirubin", "alt",
       "ast"),
    _t("lipase", "Lipase", "lab", 90, 20, "serum lipase", "amylase", "pancreatic enzymes"),
    _t("troponin", "Cardiac troponin", "lab", 60, 30, "cardiac troponin", "troponin i",
       "troponin t", "hs troponin", "high sensitivity troponin", "cardiac enzymes",
       "cardiac biomarkers"),
    _t("bnp", "B-type natriuretic peptide", "lab", 90, 45, "brain natriuretic peptide",
       "b type natriuretic peptide", "nt probnp", "probnp", "natriuretic peptide"),
    _t("d_dimer", "D-dimer", "lab", 60, 30, "d dimer", "ddimer", "fibrin degradation products"),
    _t("crp", "C-reactive protein", "lab", 60, 15, "c reactive protein"),
    _t("esr", "Erythrocyte sedimentation rate", "lab", 60, 10,
       "erythrocyte sedimentation rate", "sed rate", "sedimentation rate"),
    _t("procalcitonin", "Procalcitonin", "lab", 120, 50, "pct"),
    _t("lactate", "Lactate", "lab", 30, 15, "lactic acid", "serum lactate"),
    _t("abg", "Arterial blood gas", "lab", 15, 40, "arterial blood gas", "blood gas",
       "arterial blood gases"),
    _t("glucose", "Blood glucose (point of care)", "bedside", 5, 5, "blood glucose",
       "blood sugar", "fingerstick glucose", "capillary blood glucose",
       "point of care glucose", "random glucose", "random blood glucose", "fasting glucose",
       "glucometer"),
    _t("hba1c", "Haemoglobin A1c", "lab", 240, 25, "hemoglobin a1c", "haemoglobin a1c",
       "a1c", "glycated hemoglobin", "glycosylated hemoglobin"),
    _t("serum_ketones", "Blood ketones (beta-hydroxybutyrate)", "lab", 60, 20, "ketones",
       "blood ketones", "beta hydroxybutyrate", "bhb", "urine ketones"),
    _t("tsh", "Thyroid-stimulating hormone", "lab", 240, 25, "thyroid stimulating hormone",
       "thyroid function tests", "tfts", "thyroid panel", "thyroid function"),
    _t("free_t4", "Free thyroxine (free T4)", "lab", 240, 30, "free t4", "ft4", "thyroxine",
       "free thyroxine", "t4"),
    _t("thyroid_antibodies", "Thyroid antibodies (anti-TPO, TSH-receptor antibodies)", "lab",
       1440, 60, "anti tpo", "thyroid peroxidase antibodies", "tpo antibodies",
       "tsh receptor antibodies", "trab", "thyroid stimulating immunoglobulin", "tsi"),
    _t("cortisol", "Morning serum cortisol", "lab", 240, 35, "morning cortisol",
       "serum cortisol", "am cortisol", "8 am cortisol"),
    _t("acth_stimulation", "ACTH (cosyntropin) stimulation test", "lab", 180, 150,
       "acth stimulation", "cosyntropin stimulation", "short synacthen",
       "synacthen", "cosyntropin"),
    _t("pth", "Parathyroid hormone", "lab", 480, 60, "parathyroid hormone", "intact pth"),
    _t("coagulation", "Coagulation screen (PT/INR, aPTT)", "lab", 60, 20, "coagulation panel",
       "coagulation screen", "coags", "pt inr", "inr", "prothrombin time", "aptt", "ptt"),
    _t("lipid_panel", "Lipid panel", "lab", 240, 20, "lipid profile", "cholesterol",
       "fasting lipids", "lipids"),
    _t("iron_studies", "Iron studies (ferritin, iron, transferrin saturation)", "lab", 240, 30,
       "ferritin", "serum ferritin", "iron panel", "serum iron", "tibc",
       "transferrin saturation"),
    _t("vitamin_b12", "Vitamin B12", "lab", 480, 30, "b12", "cobalamin", "serum b12",
       "b12 and folate"),
    _t("intrinsic_factor_antibodies", "Intrinsic factor antibodies", "lab", 2880, 60,
       "anti intrinsic factor", "intrinsic factor antibody", "parietal cell antibodies"),
    _t("peripheral_smear", "Peripheral blood smear", "lab", 60, 15, "blood smear",
       "peripheral blood film", "blood film", "peripheral blood smear"),
    _t("ck", "Creatine kinase", "lab", 60, 15, "creatine kinase", "cpk",
       "creatine phosphokinase"),
    _t("uric_acid", "Serum uric acid", "lab", 240, 15, "serum urate", "urate"),
    _t("tryptase", "Serum tryptase", "lab", 240, 60, "mast cell tryptase"),
    _t("ace_level", "Angiotensin-converting enzyme level", "lab", 1440, 40,
       "angiotensin converting enzyme", "serum ace"),
    _t("carboxyhemoglobin", "Carboxyhaemoglobin (co-oximetry)", "lab", 15, 25, "cohb",
       "carboxyhaemoglobin", "co oximetry", "carbon monoxide level"),
    _t("toxicology_screen", "Toxicology screen", "lab", 60, 40, "urine drug screen",
       "tox screen", "drug screen", "uds", "urine toxicology"),
    _t("acetaminophen_level", "Acetaminophen (paracetamol) level", "lab", 60, 30,
       "paracetamol level", "paracetamol", "acetaminophen", "tylenol level"),
    # immunology and serology
    _t("ana", "Antinuclear antibodies", "lab", 1440, 40, "antinuclear antibody",
       "antinuclear antibodies", "ana titer"),
    _t("anti_dsdna", "Anti-double-stranded DNA antibodies", "lab", 1440, 50, "anti dsdna",
       "dsdna antibodies", "anti double stranded dna", "double stranded dna antibodies",
       "anti dsdna antibodies"),
    _t("complement", "Complement C3 and C4", "lab", 1440, 50, "complement levels",
       "c3 and c4", "c3", "c4", "complement c3"),
    _t("rheumatoid_factor", "Rheumatoid factor", "lab", 1440, 25, "rf"),
    _t("anti_ccp", "Anti-cyclic citrullinated peptide antibodies", "lab", 1440, 50,
       "anti cyclic citrullinated peptide", "acpa", "ccp antibodies"),
    _t("aso_titer", "Antistreptolysin O titre", "lab", 1440, 30, "antistreptolysin o", "aso",
       "aso titre", "anti streptolysin o"),
    _t("achr_antibodies", "Acetylcholine receptor antibodies", "lab", 4320, 120,
       "acetylcholine receptor antibodies", "achr ab", "anti achr"),
    _t("celiac_serology", "Coeliac serology (tissue transglutaminase IgA)", "lab", 1440, 50,
       "ttg iga", "anti ttg", "tissue transglutaminase", "tissue transglutaminase antibodies",
       "coeliac serology", "celiac panel", "endomysial antibodies"),
    _t("hepatitis_serology", "Viral hepatitis serology (A, B, C)", "lab", 1440, 80,
       "hepatitis panel", "viral hepatitis serology", "hepatitis serologies",
       "hepatitis a igm", "hbsag", "hepatitis b surface antigen", "hepatitis c antibody"),
    _t("hiv_test", "HIV antigen/antibody test", "lab", 120, 40, "hiv", "hiv serology",
       "hiv antibody", "hiv antigen antibody", "hiv 1 2", "hiv screen", "hiv rna",
       "hiv viral load"),
    _t("monospot", "Heterophile antibody (Monospot) test", "lab", 60, 20,
       "heterophile antibody", "mono spot", "mononucleosis", "ebv serology",
       "epstein barr virus serology"),
    # microbiology
    _t("blood_culture", "Blood cultures", "lab", 2880, 60, "blood cultures", "blood cx"),
    _t("urinalysis", "Urinalysis (dipstick and microscopy)", "lab", 30, 10, "ua",
       "urine analysis", "urine dipstick", "urine microscopy", "urine test"),
    _t("urine_culture", "Urine culture", "lab", 2880, 40, "urine cx", "msu culture"),
    _t("urine_protein", "Urine protein-to-creatinine ratio", "lab", 240, 20,
       "urine protein creatinine ratio", "upcr", "24 hour urine protein", "proteinuria",
       "urine albumin creatinine ratio", "urine albumin"),
    _t("sputum_culture", "Sputum Gram stain and culture", "lab", 2880, 40,
       "sputum gram stain", "sputum gram stain and culture"),
    _t("sputum_afb", "Sputum acid-fast bacilli smear and TB PCR", "lab", 1440, 60,
       "afb smear", "acid fast bacilli", "sputum for tb", "sputum acid fast bacilli",
       "tb smear", "tb pcr", "genexpert", "xpert mtb rif", "tuberculosis pcr"),
    _t("igra", "Interferon-gamma release assay (TB blood test)", "lab", 1440, 80,
       "quantiferon", "quantiferon gold", "interferon gamma release assay", "t spot",
       "tuberculin skin test", "ppd", "mantoux"),
    _t("rapid_strep", "Rapid streptococcal antigen test", "bedside", 15, 15,
       "rapid strep", "strep test", "throat swab", "rapid antigen detection test",
       "throat culture"),
    _t("influenza_test", "Influenza PCR", "lab", 60, 40, "influenza pcr", "flu test",
       "flu swab", "rapid influenza", "influenza swab", "influenza a b"),
    _t("covid_test", "SARS-CoV-2 PCR", "lab", 60, 40, "sars cov 2", "sars cov 2 pcr",
       "covid 19", "covid pcr", "coronavirus"),
    _t("malaria_smear", "Malaria thick and thin films", "lab", 60, 20, "malaria",
       "malaria film", "malaria films", "thick and thin smear", "thick and thin films",
       "malaria rapid diagnostic", "malaria rdt"),
    _t("stool_culture", "Stool culture", "lab", 2880, 40, "stool culture and sensitivity",
       "stool ova and parasites", "stool microscopy"),
    _t("c_diff_toxin", "Clostridioides difficile toxin and PCR", "lab", 120, 50,
       "c diff", "c difficile", "c difficile toxin", "clostridium difficile toxin",
       "clostridioides difficile", "stool c diff"),
    _t("h_pylori_test", "Helicobacter pylori test (stool antigen or breath test)", "lab", 120,
       40, "h pylori", "helicobacter pylori", "urea breath", "h pylori stool antigen"),
    _t("stool_occult_blood", "Faecal occult blood (FIT)", "lab", 120, 20, "fobt", "fit",
       "fecal occult blood", "faecal occult blood", "faecal immunochemical"),
    # fluids and tissue
    _t("lumbar_puncture", "Lumbar puncture with CSF analysis and opening pressure", "lab",
       120, 150, "lp", "spinal tap", "csf analysis", "cerebrospinal fluid analysis", "csf",
       "cerebrospinal fluid"),
    _t("synovial_fluid_analysis", "Joint aspiration with synovial fluid analysis", "lab", 120,
       100, "joint aspiration", "arthrocentesis", "synovial fluid", "joint fluid analysis",
       "joint tap", "synovial fluid crystals"),
    _t("temporal_artery_biopsy", "Temporal artery biopsy", "lab", 4320, 600,
       "temporal artery"),
    _t("pregnancy_test", "Pregnancy test (hCG)", "bedside", 15, 10, "urine hcg",
       "beta hcg", "serum hcg", "bhcg", "urine pregnancy", "hcg", "serum beta hcg",
       "urine beta hcg"),
    # bedside
    _t("ecg", "12-lead electrocardiogram", "bedside", 10, 25, "ekg", "electrocardiogram",
       "12 lead ecg", "12 lead ekg", "electrocardiography"),
    _t("peak_flow", "Peak expiratory flow", "bedside", 5, 5, "peak expiratory flow", "pefr",
       "pef", "peak flow meter"),
    _t("spirometry", "Spirometry", "bedside", 30, 60, "pulmonary function tests", "pft",
       "pfts", "lung function tests", "pulmonary function"),
    _t("bladder_scan", "Bladder scan (post-void residual)", "bedside", 5, 15,
       "post void residual", "bladder ultrasound", "pvr"),
    _t("nerve_conduction_study", "Nerve conduction study and electromyography", "bedside",
       120, 250, "emg", "electromyography", "ncs", "nerve conduction studies",
       "repetitive nerve stimulation", "emg ncs"),
    _t("eeg", "Electroencephalogram", "bedside", 120, 200, "electroencephalogram",
       "electroencephalography"),
    # imaging and endoscopy
    _t("chest_xray", "Chest X-ray", "imaging", 60, 50, "cxr", "chest radiograph",
       "chest film", "pa and lateral chest", "chest radiography", "chest xray"),
    _t("abdominal_xray", "Abdominal X-ray", "imaging", 60, 50, "axr", "abdominal radiograph",
       "abdominal film", "kub xray", "abdomen xray", "plain abdominal film"),
    _t("joint_xray", "X-ray of the affected joint", "imaging", 60, 50, "joint radiograph",
       "joint xray", "xray of the joint", "xray of the affected joint", "knee xray",
       "foot xray", "hand xray"),
    _t("ct_head", "CT head (non-contrast)", "imaging", 45, 300, "head ct", "ct brain",
       "non contrast ct head", "ct of the head", "cat head", "noncontrast head ct"),
    _t("mri_brain", "MRI brain", "imaging", 120, 900, "brain mri", "mri head",
       "mri of the brain", "head mri"),
    _t("mri_spine", "MRI spine", "imaging", 120, 900, "spine mri", "mri of the spine",
       "mri lumbar spine", "mri cervical spine", "mri sacroiliac joints"),
    _t("ct_chest", "CT chest", "imaging", 60, 350, "chest ct", "ct thorax",
       "high resolution ct chest", "hrct", "hrct chest", "ct of the chest"),
    _t("ct_angiogram_chest", "CT angiogram of the chest (pulmonary arteries and aorta)",
       "imaging", 60, 450, "ctpa", "ct pulmonary angiogram", "ct pulmonary angiography",
       "cta chest", "ct aortogram", "ct angiography chest", "ct angiogram chest",
       "ct pe protocol", "ct angiogram aorta", "ct aorta"),
    _t("ct_abdomen", "CT abdomen and pelvis", "imaging", 60, 400, "ct abdomen pelvis",
       "abdominal ct", "ct of the abdomen", "ct abdomen and pelvis", "cat abdomen",
       "abdominopelvic ct", "ct abdomen with contrast"),
    _t("ct_kub", "CT kidneys, ureters and bladder (non-contrast)", "imaging", 45, 300,
       "ct stone protocol", "non contrast ct kub", "ct kidneys ureters bladder",
       "ct urogram", "renal stone ct"),
    _t("abdominal_ultrasound", "Abdominal ultrasound", "imaging", 60, 150,
       "ultrasound abdomen", "abdominal us", "ruq ultrasound",
       "right upper quadrant ultrasound", "gallbladder ultrasound", "liver ultrasound",
       "aortic ultrasound", "bedside aortic ultrasound", "abdominal sonography"),
    _t("renal_ultrasound", "Renal ultrasound", "imaging", 60, 150, "kidney ultrasound",
       "renal us", "ultrasound kidneys", "renal tract ultrasound"),
    _t("pelvic_ultrasound", "Pelvic ultrasound (transvaginal)", "imaging", 60, 150,
       "transvaginal ultrasound", "tvus", "pelvic us", "ultrasound pelvis",
       "transvaginal sonography"),
    _t("scrotal_ultrasound", "Scrotal Doppler ultrasound", "imaging", 45, 150,
       "testicular ultrasound", "scrotal doppler", "testicular doppler", "scrotal us"),
    _t("leg_doppler", "Lower-limb venous Doppler ultrasound", "imaging", 60, 150,
       "lower extremity doppler", "venous duplex", "leg ultrasound", "dvt ultrasound",
       "compression ultrasound", "lower limb doppler", "venous doppler"),
    _t("echocardiogram", "Transthoracic echocardiogram", "imaging", 120, 400, "echo", "tte",
       "transthoracic echocardiogram", "cardiac ultrasound", "echocardiography"),
    _t("upper_endoscopy", "Upper endoscopy (oesophagogastroduodenoscopy)", "imaging", 240,
       800, "egd", "esophagogastroduodenoscopy", "oesophagogastroduodenoscopy", "ogd",
       "gastroscopy", "upper gi endoscopy", "endoscopy"),
    _t("colonoscopy", "Colonoscopy", "imaging", 240, 900, "lower gi endoscopy",
       "flexible sigmoidoscopy", "sigmoidoscopy"),
)


# -- text normalisation for test names ------------------------------------------------------

_TEST_FILLER = frozenset({
    "test", "tests", "testing", "level", "levels", "serum", "plasma", "please", "request",
    "order", "a", "an", "the", "of", "for", "and", "with", "scan", "study", "studies", "panel",
    "assay", "result", "results", "exam", "examination", "measurement",
})


def _fold(text: str) -> str:
    """Lower case, accents and Greek beta folded, ``x-ray`` spelled ``xray``, every other
    non-alphanumeric character a space."""
    text = unicodedata.normalize("NFKD", text.replace("β", "beta").replace("&", " and "))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"\bx[\s\-_]*rays?\b", "xray", text)
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _singular(token: str) -> str:
    if len(token) > 3 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def key_of_test(name: str) -> str:
    """The lookup key of a test name: folded, filler words ("test", "level", "serum",
    "scan", ...) dropped, plurals made singular, words sorted (so "head CT" and "CT head"
    are one key). Two names with the same key name the same test."""
    tokens = {_singular(t) for t in _fold(name).split() if t not in _TEST_FILLER}
    return " ".join(sorted(tokens))


def _build_test_index(tests: Iterable[TestInfo]) -> dict[str, str]:
    index: dict[str, str] = {}
    for info in tests:
        for text in (info.name, info.label, *info.aliases):
            key = key_of_test(text)
            if not key:
                raise ValueError(f"test {info.name!r}: the name {text!r} has no words")
            other = index.setdefault(key, info.name)
            if other != info.name:
                raise ValueError(f"the test name {text!r} would mean both {other!r} and "
                                 f"{info.name!r}")
    return index


_REQUEST_FILLER = frozenset({
    "with", "without", "contrast", "including", "x2", "x3", "serial", "repeat", "stat",
    "urgent", "right", "left", "both", "bilateral", "gadolinium", "of", "the",
})
"""Words of a request that never name a test, dropped before the fallback word match of
``normalise_test`` ("MRI of the brain with gadolinium", "Blood cultures x2")."""

_TEST_ALIASES: tuple[tuple[frozenset[str], str], ...] = tuple(
    (frozenset(key_of_test(text).split()), info.name)
    for info in _TESTS for text in (info.name.replace("_", " "), info.label, *info.aliases))

TEST_VOCABULARY: Mapping[str, TestInfo] = MappingProxyType({t.name: t for t in _TESTS})
"""Every orderable test by canonical name, in a stable order (blood, serology,
microbiology, fluids, bedside, imaging)."""

_TEST_INDEX = _build_test_index(_TESTS)


def normalise_test(name: str, *, exact: bool = False) -> str | None:
    """The canonical name of a test, or None when the vocabulary does not know it.

    Case, punctuation, accents, word order, plurals and filler words ("test", "level",
    "serum", "scan", "please", ...) do not matter, and every alias counts:
    ``normalise_test("12-lead EKG") == "ecg"``, ``normalise_test("Chest X-Ray") ==
    "chest_xray"``, ``normalise_test("Complete Blood Count") == "cbc"``.

    Without an exact match, a request with extra words ("CT scan of the head without
    contrast", "Blood cultures x2") names the test whose longest alias has all its words
    in the request (extra filler such as "with", "contrast", "x2", "left" ignored), when
    exactly one test has an alias of that length there; a vague request ("CT scan",
    "MRI", "blood test") stays unknown.

    Args:
        name: a free-text test name (an order, an AgentClinic key such as
            ``Complete_Blood_Count``).
        exact: only the exact match (no fallback on the words of the longest alias).

    Returns:
        The canonical name (a key of ``TEST_VOCABULARY``) or None.
    """
    key = key_of_test(name)
    if not key:
        return None
    found_exact = _TEST_INDEX.get(key)
    if found_exact is not None or exact:
        return found_exact
    # no exact match: the test whose longest alias has all its words in the request, when
    # exactly one test matches at that length ("CT scan of the head without contrast" ->
    # ct_head; "CT scan", "MRI", "blood test" stay unknown: several tests or none)
    words = set(key.split()) - _REQUEST_FILLER
    best, found = 0, set()
    for alias, test in _TEST_ALIASES:
        if len(alias) >= best and alias <= words:
            if len(alias) > best:
                best, found = len(alias), set()
            found.add(test)
    return found.pop() if len(found) == 1 else None


# -- symptoms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymptomInfo:
    """One symptom key.

    Attributes:
        key: the normalised key a case lists in ``patient.symptom_keys``.
        label: a plain phrase for it ("chest pain"): what a rule doctor asks about.
        system: the body system it belongs to.
        aliases: other phrases that mean it (for ``normalise_symptom`` and
            ``find_symptoms``).
        implies: a more general key that any case listing this one must list too
            (``pleuritic_chest_pain`` implies ``chest_pain``), so that a question about the
            general symptom gets the right answer.
    """

    key: str
    label: str
    system: str
    aliases: tuple[str, ...] = ()
    implies: str | None = None


def _s(key: str, system: str, *aliases: str, implies: str | None = None,
       label: str | None = None) -> SymptomInfo:
    return SymptomInfo(key, label or key.replace("_", " "), system, aliases, implies)


_SYMPTOMS: tuple[SymptomInfo, ...] = (
    # general
    _s("fever", "general", "high temperature", "feverish", "pyrexia", "fevers"),
    _s("chills", "general", "rigors", "shivering", "shaking chills"),
    _s("night_sweats", "general", "sweating at night", "drenching night sweats"),
    _s("fatigue", "general", "tiredness", "tired", "lethargy", "exhaustion", "malaise"),
    _s("weight_loss", "general", "losing weight", "unintentional weight loss"),
    _s("weight_gain", "general", "putting on weight"),
    _s("loss_of_appetite", "general", "anorexia", "poor appetite", "reduced appetite"),
    _s("myalgia", "general", "muscle aches", "body aches", "aching muscles",
       label="muscle aches"),
    _s("excessive_thirst", "general", "polydipsia", "increased thirst", "very thirsty"),
    _s("heat_intolerance", "general", "feeling hot all the time"),
    _s("cold_intolerance", "general", "feeling cold all the time"),
    _s("sweating", "general", "diaphoresis", "sweaty", "clammy", "excessive sweating"),
    _s("dizziness", "general", "lightheadedness", "lightheaded", "dizzy", "feeling faint"),
    _s("syncope", "general", "fainting", "passed out", "loss of consciousness", "blackout",
       "fainted", label="fainting"),
    _s("salt_craving", "general", "craving salt", "craving salty food"),
    # cardiovascular
    _s("chest_pain", "cardiovascular", "chest pressure", "chest tightness",
       "chest discomfort", "chest heaviness"),
    _s("pleuritic_chest_pain", "cardiovascular", "pain on breathing in",
       "chest pain worse on breathing", "sharp chest pain on inspiration", "pleurisy",
       implies="chest_pain", label="chest pain that is worse when breathing in"),
    _s("chest_pain_radiating_to_back", "cardiovascular", "tearing chest pain",
       "pain radiating to the back", "pain going through to the back",
       implies="chest_pain", label="chest pain going through to the back"),
    _s("positional_chest_pain", "cardiovascular", "chest pain better leaning forward",
       "chest pain worse lying flat", implies="chest_pain",
       label="chest pain that changes with position"),
    _s("palpitations", "cardiovascular", "racing heart", "heart pounding", "fluttering",
       "irregular heartbeat", "heart racing", "racing heartbeat"),
    _s("orthopnea", "cardiovascular", "orthopnoea", "breathless lying flat",
       "paroxysmal nocturnal dyspnea", "waking up breathless",
       label="breathlessness when lying flat"),
    _s("leg_swelling", "cardiovascular", "ankle swelling", "swollen legs", "edema",
       "oedema", "swollen ankles", "peripheral edema"),
    _s("calf_pain", "cardiovascular", "calf swelling", "swollen calf", "painful calf",
       label="pain or swelling in one calf"),
    # respiratory
    _s("shortness_of_breath", "respiratory", "dyspnea", "dyspnoea", "breathlessness",
       "difficulty breathing", "short of breath", "breathless", "shortness of breath"),
    _s("cough", "respiratory", "coughing", "dry cough"),
    _s("productive_cough", "respiratory", "coughing up phlegm", "sputum",
       "coughing up sputum", "phlegm", implies="cough"),
    _s("hemoptysis", "respiratory", "coughing up blood", "haemoptysis", "blood in sputum",
       label="coughing up blood"),
    _s("wheeze", "respiratory", "wheezing"),
    _s("sore_throat", "respiratory", "pharyngitis", "throat pain", "painful swallowing"),
    _s("runny_nose", "respiratory", "nasal congestion", "rhinorrhea", "blocked nose"),
    # gastrointestinal
    _s("nausea", "gastrointestinal", "feeling sick", "nauseous", "queasy"),
    _s("vomiting", "gastrointestinal", "throwing up", "emesis"),
    _s("abdominal_pain", "gastrointestinal", "stomach pain", "belly pain", "tummy ache",
       "abdominal cramps", "stomach ache", "abdominal discomfort"),
    _s("epigastric_pain", "gastrointestinal", "upper abdominal pain",
       "pain in the upper abdomen", implies="abdominal_pain"),
    _s("right_upper_quadrant_pain", "gastrointestinal", "ruq pain",
       "pain under the right ribs", implies="abdominal_pain"),
    _s("right_lower_quadrant_pain", "gastrointestinal", "rlq pain", "right iliac fossa pain",
       implies="abdominal_pain"),
    _s("lower_abdominal_pain", "gastrointestinal", "pelvic pain", "suprapubic pain",
       implies="abdominal_pain"),
    _s("diarrhea", "gastrointestinal", "diarrhoea", "loose stools", "watery stools",
       "watery diarrhea"),
    _s("blood_in_stool", "gastrointestinal", "rectal bleeding", "bloody stools",
       "bloody diarrhea", "bloody diarrhoea", "hematochezia"),
    _s("black_stools", "gastrointestinal", "melena", "melaena", "tarry stools"),
    _s("vomiting_blood", "gastrointestinal", "hematemesis", "haematemesis",
       "coffee ground vomit"),
    _s("constipation", "gastrointestinal"),
    _s("bloating", "gastrointestinal", "abdominal distension", "flatulence"),
    _s("heartburn", "gastrointestinal", "acid reflux", "burning in the chest",
       "regurgitation", "indigestion"),
    _s("jaundice", "gastrointestinal", "yellow skin", "yellow eyes", "yellowing"),
    _s("dark_urine", "gastrointestinal", "tea coloured urine", "cola coloured urine",
       "tea colored urine", "cola colored urine"),
    _s("difficulty_swallowing", "gastrointestinal", "dysphagia"),
    # neurological
    _s("headache", "neurological", "head pain", "headaches"),
    _s("sudden_severe_headache", "neurological", "thunderclap headache",
       "worst headache of my life", "worst headache of her life",
       "worst headache of his life", "explosive headache", implies="headache"),
    _s("morning_headache", "neurological", "headache worse in the morning",
       "headache on waking", implies="headache"),
    _s("neck_stiffness", "neurological", "stiff neck", "nuchal rigidity"),
    _s("photophobia", "neurological", "light sensitivity", "sensitivity to light"),
    _s("confusion", "neurological", "disorientation", "altered mental status", "confused",
       "disoriented", "drowsiness"),
    _s("seizure", "neurological", "convulsion", "seizures", "convulsions"),
    _s("one_sided_weakness", "neurological", "hemiparesis", "weakness on one side",
       "unilateral weakness", "facial droop", "right-sided weakness", "left-sided weakness"),
    _s("muscle_weakness", "neurological", "weak legs", "weakness in the legs",
       "weakness in both legs", "proximal weakness", "limb weakness",
       "fatigable weakness", "weakness of both legs"),
    _s("speech_difficulty", "neurological", "slurred speech", "difficulty speaking",
       "aphasia", "dysarthria", "word finding difficulty"),
    _s("blurred_vision", "neurological", "blurry vision"),
    _s("vision_loss", "neurological", "loss of vision", "visual loss",
       "transient visual obscurations", "blindness", "visual disturbance"),
    _s("double_vision", "neurological", "diplopia"),
    _s("drooping_eyelid", "neurological", "ptosis", "droopy eyelid"),
    _s("numbness_tingling", "neurological", "numbness", "tingling", "pins and needles",
       "paresthesia", "paraesthesia", label="numbness or tingling"),
    _s("difficulty_walking", "neurological", "unsteady gait", "balance problems",
       "unsteadiness", "gait disturbance"),
    _s("tremor", "neurological", "shaking hands", "shakiness"),
    _s("jaw_claudication", "neurological", "jaw pain when chewing", "jaw pain on chewing",
       label="jaw pain when chewing"),
    _s("scalp_tenderness", "neurological", "tender scalp", "scalp pain"),
    _s("pulsatile_tinnitus", "neurological", "whooshing in the ears",
       "whooshing sound in the ears"),
    _s("personality_change", "neurological", "behaviour change", "behavior change",
       "personality changes"),
    _s("eye_pain", "neurological", "pain on moving the eye", "painful eye", "painful vision"),
    # renal and urological, reproductive
    _s("dysuria", "genitourinary", "painful urination", "burning on urination",
       "burning when urinating", label="pain or burning when passing urine"),
    _s("urinary_frequency", "genitourinary", "frequent urination", "urinary urgency",
       "passing urine often"),
    _s("polyuria", "genitourinary", "passing large amounts of urine",
       "large volumes of urine", label="passing large amounts of urine"),
    _s("flank_pain", "genitourinary", "loin pain", "pain in the side"),
    _s("groin_pain", "genitourinary", "pain radiating to the groin"),
    _s("blood_in_urine", "genitourinary", "hematuria", "haematuria", "red urine",
       "pink urine"),
    _s("foamy_urine", "genitourinary", "frothy urine", "bubbly urine"),
    _s("reduced_urine_output", "genitourinary", "oliguria", "passing little urine",
       "passing less urine"),
    _s("inability_to_urinate", "genitourinary", "urinary retention", "cannot pass urine",
       "unable to urinate", "unable to pass urine"),
    _s("scrotal_pain", "genitourinary", "testicular pain", "pain in the testicle",
       "pain in the left testicle", "pain in the right testicle"),
    _s("missed_period", "genitourinary", "late period", "amenorrhea", "amenorrhoea"),
    _s("vaginal_bleeding", "genitourinary", "spotting", "vaginal spotting"),
    _s("heavy_periods", "genitourinary", "menorrhagia", "heavy menstrual bleeding"),
    # musculoskeletal
    _s("joint_pain", "musculoskeletal", "arthralgia", "painful joint", "painful joints",
       "arthralgias"),
    _s("joint_swelling", "musculoskeletal", "swollen joint", "swollen joints"),
    _s("morning_stiffness", "musculoskeletal", "stiff in the morning"),
    _s("back_pain", "musculoskeletal", "lower back pain", "low back pain"),
    _s("bone_pain", "musculoskeletal", "aching bones"),
    # skin and lymph nodes
    _s("rash", "skin", "skin rash", "spots"),
    _s("malar_rash", "skin", "butterfly rash", "rash on the cheeks", implies="rash"),
    _s("hives", "skin", "urticaria", "itchy welts", "wheals", implies="rash"),
    _s("itching", "skin", "pruritus", "itchy", "itchy skin"),
    _s("hair_loss", "skin", "alopecia", "thinning hair"),
    _s("hyperpigmentation", "skin", "darkening of the skin", "darker skin",
       label="darkening of the skin"),
    _s("dry_skin", "skin"),
    _s("pale_skin", "skin", "pallor", "looking pale"),
    _s("facial_swelling", "skin", "swollen lips", "swollen face", "lip swelling",
       "tongue swelling", "angioedema", "swollen tongue"),
    _s("oral_ulcers", "skin", "mouth ulcers", "mouth sores"),
    _s("photosensitivity", "skin", "sun sensitivity", "rash after sun exposure"),
    _s("swollen_lymph_nodes", "lymph_nodes", "swollen glands", "lymphadenopathy",
       "lumps in the neck", "enlarged lymph nodes"),
    # mood
    _s("low_mood", "psychiatric", "depression", "feeling down", "depressed mood"),
    _s("anxiety", "psychiatric", "nervousness", "feeling anxious", "anxious",
       "restlessness"),
)

SYMPTOM_VOCABULARY: Mapping[str, SymptomInfo] = MappingProxyType(
    {s.key: s for s in _SYMPTOMS})
"""Every symptom key, grouped by system."""


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(_fold(text).split())


def _build_symptom_index(symptoms: Iterable[SymptomInfo]) -> dict[tuple[str, ...], str]:
    index: dict[tuple[str, ...], str] = {}
    for info in symptoms:
        if info.implies is not None and info.implies not in {s.key for s in _SYMPTOMS}:
            raise ValueError(f"symptom {info.key!r} implies the unknown {info.implies!r}")
        for text in (info.key, info.label, *info.aliases):
            phrase = _phrase(text)
            other = index.setdefault(phrase, info.key)
            if other != info.key:
                raise ValueError(f"the symptom phrase {text!r} would mean both {other!r} "
                                 f"and {info.key!r}")
    return index


_SYMPTOM_INDEX = _build_symptom_index(_SYMPTOMS)
_LONGEST_PHRASE = max(len(p) for p in _SYMPTOM_INDEX)


def normalise_symptom(text: str) -> str | None:
    """The symptom key a phrase means ("Shortness of breath", "dyspnoea" ->
    ``shortness_of_breath``), or None; the whole phrase must match a key, label or alias
    (case and punctuation aside)."""
    return _SYMPTOM_INDEX.get(_phrase(text))


def find_symptoms(text: str) -> list[str]:
    """Every symptom key with a phrase in ``text``, in order of appearance, then the keys
    those imply (see ``SymptomInfo.implies``). Where phrases overlap the longest wins:
    "pleuritic chest pain" finds ``pleuritic_chest_pain``, and ``chest_pain`` only as the
    key it implies.

    The text is taken as a list of symptoms the patient has: negations ("no fever") are not
    understood, so do not give it a review of systems.
    """
    found = longest_phrases(_phrase(text), _SYMPTOM_INDEX, _LONGEST_PHRASE)
    return found + sorted(implied_symptoms(found) - set(found))


def longest_phrases(words: Sequence[str], index: Mapping[tuple[str, ...], str],
                    longest: int) -> list[str]:
    """The values of ``index`` (phrase as a tuple of words -> name) whose phrases occur in
    ``words``, each once, in order of appearance; scanning left to right, the longest phrase
    (of at most ``longest`` words) starting at a word wins, and its words are used up."""
    found: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            name = index.get(tuple(words[i:i + n]))
            if name is not None:
                if name not in found:
                    found.append(name)
                i += n
                break
        else:
            i += 1
    return found


def implied_symptoms(keys: Iterable[str]) -> set[str]:
    """The keys that ``keys`` imply and that a case must list too."""
    out: set[str] = set()
    for key in keys:
        info = SYMPTOM_VOCABULARY.get(key)
        while info is not None and info.implies is not None:
            out.add(info.implies)
            info = SYMPTOM_VOCABULARY.get(info.implies)
    return out
