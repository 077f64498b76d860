"""Diagnosis normalisation and matching: the judge's string rule.

Core objects:
    normalise_diagnosis: a diagnosis text to its normal form ("Acute PE." and "pulmonary
        embolism" both give ``"pulmonary embolism"``).
    diagnosis_matches: whether a doctor's answer names a case's correct diagnosis.
    rank_of_diagnosis: the position of the correct diagnosis in a ranked differential (for
        top-k accuracy).
    GLOBAL_SYNONYMS: groups of names that mean one disease whatever the case.

The rule, in order:

1. Both texts are folded: lower case, accents dropped, apostrophes dropped ("Crohn's" is
   "crohns"), every other punctuation mark a space, British spellings folded ("ae" and "oe"
   inside a word become "e": "haemorrhage" is "hemorrhage", "coeliac" is "celiac"), plurals
   made singular, and a roman numeral or number word after "type" made a digit ("type II"
   is "type 2").
2. Words that hedge or decorate an answer are dropped: ``HEDGE_WORDS`` ("acute", "likely",
   "probable", "suspected", "consistent with", "diagnosis", "of", "the", ...). "Acute" is
   dropped because doctors add and leave it out freely; "chronic" is kept because it names
   another disease ("chronic pancreatitis" does not match "acute pancreatitis").
3. What is left is compared as a set of words: word order does not matter ("exacerbation of
   COPD" is "COPD exacerbation"), but every word does. An answer with a word more or a word
   less does not match: "type 1 diabetes" does not match "type 2 diabetes mellitus",
   "bacterial meningitis" does not match "viral meningitis", and "pneumonia" does not match
   "community-acquired pneumonia" by itself. Where the less specific name is an acceptable
   answer, the case lists it among its synonyms (the shipped pneumonia cases list
   "pneumonia"); the judge never guesses that a qualifier is unimportant.
4. The answer matches when its word set equals that of the case's diagnosis, of one of the
   case's synonyms, or of any name in a ``GLOBAL_SYNONYMS`` group that contains one of
   those ("PE" for "pulmonary embolism", "T2DM" for "type 2 diabetes mellitus").
5. Text in parentheses may be left out: "Pulmonary embolism (massive)" matches
   "pulmonary embolism"; the whole answer is tried too. So may a cause, complication or
   comment after "due to", "secondary to", "caused by", "with", "in the setting of",
   "complicated by", ";" or ",": "Syncope due to aortic stenosis" is read as "syncope" too
   (the text before the first such word); so may either side of " - " or ": " ("Acute
   coronary syndrome: NSTEMI" is read as "NSTEMI" too).
6. Single-token abbreviations of the global groups (names written in capitals: "PE", "AF",
   "SAH", "RA", "CHF", "T2DM", and "DM", "B12") are written out inside a longer name:
   "Massive PE" is "massive pulmonary embolism", "Type 2 DM" is "type 2 diabetes mellitus".
7. A hyphen inside a word may join it: "Pre-renal AKI" matches "prerenal AKI" (both readings
   are tried, so "non-ST elevation MI" still matches "non-ST-elevation MI").
8. ``QUALIFIER_WORDS`` (laterality, severity, onset, "uncomplicated", "flare") may be added or
   left out, but not contradicted: "Left-sided pneumothorax" matches "pneumothorax", "mild
   aortic stenosis" does not match "severe aortic stenosis".
9. An answer naming two diagnoses ("pneumonia or pulmonary embolism", "pneumonia vs PE")
   matches neither: the doctor must commit. A slash answer matches only when every
   alternative does ("Viral/idiopathic pericarditis" matches a case listing both "viral
   pericarditis" and "idiopathic pericarditis"; "Pneumonia/PE" matches neither case).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Protocol

HEDGE_WORDS = frozenset({
    "acute", "likely", "most", "more", "probable", "probably", "possible", "possibly",
    "suspected", "suspect", "presumed", "presumptive", "provisional", "working", "final",
    "consistent", "suggestive", "compatible", "keeping", "with", "of", "in", "the", "a", "an",
    "diagnosis", "diagnoses", "dx", "is", "impression", "clinical", "picture", "patient",
    "has",
})
"""Words dropped from both texts before comparing ("a" is kept where it is a letter:
"hepatitis A", "influenza A", "vitamin A", "type A")."""

_LETTER_AFTER = frozenset({"hepatitis", "influenza", "vitamin", "type", "group", "class",
                           "grade", "stage", "factor", "hemophilia", "haemophilia"})

_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "one": "1", "two": "2", "three": "3",
          "four": "4"}

GLOBAL_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("myocardial infarction", "MI", "heart attack"),
    ("ST-elevation myocardial infarction", "STEMI", "ST elevation MI",
     "ST-segment elevation myocardial infarction"),
    ("non-ST-elevation myocardial infarction", "NSTEMI", "non-ST elevation MI",
     "non-ST-segment elevation myocardial infarction"),
    ("pulmonary embolism", "PE", "pulmonary embolus", "pulmonary thromboembolism"),
    ("deep vein thrombosis", "DVT", "deep venous thrombosis"),
    ("aortic dissection", "dissection of the aorta", "dissecting aortic aneurysm"),
    ("heart failure", "congestive heart failure", "CHF", "cardiac failure"),
    ("atrial fibrillation", "AF", "AFib", "A-fib"),
    ("aortic stenosis", "aortic valve stenosis"),
    ("COPD exacerbation", "AECOPD", "chronic obstructive pulmonary disease exacerbation",
     "exacerbation of chronic obstructive pulmonary disease"),
    ("asthma exacerbation", "asthma attack", "acute asthma", "acute severe asthma"),
    ("pneumothorax", "spontaneous pneumothorax", "primary spontaneous pneumothorax",
     "collapsed lung"),
    ("community-acquired pneumonia", "CAP"),
    ("tuberculosis", "TB", "pulmonary tuberculosis", "pulmonary TB"),
    ("sarcoidosis", "sarcoid", "pulmonary sarcoidosis"),
    ("lung cancer", "bronchogenic carcinoma", "lung carcinoma", "carcinoma of the lung"),
    ("urinary tract infection", "UTI"),
    ("pyelonephritis", "kidney infection", "upper urinary tract infection", "upper UTI"),
    ("infectious mononucleosis", "mononucleosis", "mono", "glandular fever",
     "EBV infection", "Epstein-Barr virus infection"),
    ("influenza", "flu"),
    ("Clostridioides difficile infection", "C. difficile infection", "C diff",
     "C. difficile colitis", "Clostridium difficile colitis",
     "Clostridioides difficile colitis", "Clostridium difficile infection",
     "pseudomembranous colitis", "CDI"),
    ("acute HIV infection", "acute retroviral syndrome", "primary HIV infection",
     "HIV seroconversion illness"),
    ("subarachnoid hemorrhage", "SAH", "aneurysmal subarachnoid hemorrhage"),
    ("ischemic stroke", "cerebral infarction", "ischemic cerebrovascular accident"),
    ("multiple sclerosis", "MS"),
    ("Guillain-Barre syndrome", "GBS", "acute inflammatory demyelinating polyneuropathy",
     "AIDP"),
    ("myasthenia gravis", "MG"),
    ("idiopathic intracranial hypertension", "IIH", "pseudotumor cerebri",
     "benign intracranial hypertension"),
    ("giant cell arteritis", "temporal arteritis", "GCA", "Horton disease"),
    ("glioblastoma", "glioblastoma multiforme", "GBM", "grade 4 astrocytoma"),
    ("cholecystitis", "calculous cholecystitis"),
    ("peptic ulcer disease", "peptic ulcer", "PUD"),
    ("celiac disease", "celiac sprue", "gluten-sensitive enteropathy"),
    ("ulcerative colitis", "UC"),
    ("gastroesophageal reflux disease", "GERD", "GORD", "gastro-oesophageal reflux disease",
     "reflux disease"),
    ("hepatitis A", "hepatitis A infection", "HAV infection"),
    ("diabetic ketoacidosis", "DKA"),
    ("type 1 diabetes mellitus", "type 1 diabetes", "T1DM", "T1D",
     "insulin-dependent diabetes mellitus", "IDDM", "juvenile diabetes"),
    ("type 2 diabetes mellitus", "type 2 diabetes", "T2DM", "T2D",
     "non-insulin-dependent diabetes mellitus", "NIDDM", "adult-onset diabetes"),
    ("Graves disease", "Basedow disease", "diffuse toxic goiter"),
    ("hyperthyroidism", "thyrotoxicosis", "overactive thyroid"),
    ("hypothyroidism", "underactive thyroid"),
    ("Hashimoto thyroiditis", "Hashimoto disease", "chronic lymphocytic thyroiditis",
     "autoimmune thyroiditis"),
    ("primary adrenal insufficiency", "Addison disease", "primary adrenocortical insufficiency"),
    ("primary hyperparathyroidism", "PHPT"),
    ("acute kidney injury", "AKI", "acute renal failure", "ARF"),
    ("chronic kidney disease", "CKD", "chronic renal failure"),
    ("post-streptococcal glomerulonephritis", "poststreptococcal glomerulonephritis", "PSGN"),
    ("nephrolithiasis", "kidney stone", "renal colic", "ureteric colic", "urolithiasis",
     "ureterolithiasis", "renal calculus", "ureteric stone", "ureteral stone"),
    ("urinary retention", "acute urinary retention"),
    ("benign prostatic hyperplasia", "BPH", "benign prostatic hypertrophy",
     "enlarged prostate"),
    ("testicular torsion", "torsion of the testis", "torsion of the testicle",
     "spermatic cord torsion"),
    ("gout", "gouty arthritis", "gout flare", "podagra"),
    ("septic arthritis", "infectious arthritis", "bacterial arthritis", "pyogenic arthritis"),
    ("rheumatoid arthritis", "RA"),
    ("systemic lupus erythematosus", "SLE", "lupus"),
    ("polymyalgia rheumatica", "PMR"),
    ("carbon monoxide poisoning", "CO poisoning", "carbon monoxide toxicity"),
    ("anaphylaxis", "anaphylactic reaction", "anaphylactic shock"),
    ("acetaminophen overdose", "paracetamol overdose", "acetaminophen toxicity",
     "acetaminophen poisoning", "paracetamol poisoning", "paracetamol toxicity"),
    ("ectopic pregnancy", "tubal pregnancy"),
    ("hypoglycemia", "low blood sugar"),
    ("ruptured abdominal aortic aneurysm", "ruptured AAA", "AAA rupture",
     "abdominal aortic aneurysm rupture"),
    ("iron deficiency anemia", "IDA"),
    ("vitamin B12 deficiency", "B12 deficiency", "cobalamin deficiency"),
)
"""Names that mean one disease in any case, the preferred name first (what
``normalise_diagnosis`` returns for any of them)."""


class HasDiagnosis(Protocol):
    """What the judge needs of a case: its correct diagnosis and accepted synonyms."""

    @property
    def diagnosis(self) -> str: ...

    @property
    def synonyms(self) -> Sequence[str]: ...


_NOT_PLURAL = frozenset({"diabetes", "herpes", "rabies", "scabies", "measles", "mumps",
                         "graves", "aids", "shingles", "rickets", "pes"})


def _singular(word: str) -> str:
    if word in _NOT_PLURAL:
        return word
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _raw_words(text: str) -> list[str]:
    """Step 1 and 2 of the rule: the folded words that count, in order, without repeats."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"['\u2019`]", "", text)
    raw = re.sub(r"[^a-z0-9]+", " ", text).split()
    out: list[str] = []
    for i, word in enumerate(raw):
        if i > 0 and raw[i - 1] == "type" and word in _ROMAN:
            word = _ROMAN[word]
        letter = word == "a" and i > 0 and raw[i - 1] in _LETTER_AFTER
        word = _singular(word.replace("ae", "e").replace("oe", "e"))
        if (letter or word not in HEDGE_WORDS) and word not in out:
            out.append(word)
    return out


_EXTRA_ABBREVIATIONS = {"dm": "diabetes mellitus", "b12": "vitamin B12"}


def _build_abbreviations() -> dict[str, tuple[str, ...]]:
    """Single-token abbreviations (names written in capitals, "AFib") of the global groups,
    to the words of their group's first name, and a few that name no group by themselves
    ("DM", "B12" for "vitamin B12")."""
    table = {word: tuple(_raw_words(name)) for word, name in _EXTRA_ABBREVIATIONS.items()}
    for group in GLOBAL_SYNONYMS:
        canon = tuple(_raw_words(group[0]))
        for name in group:
            words = _raw_words(name)
            letters = re.sub(r"[^A-Za-z]", "", name)
            if (len(words) == 1 and tuple(words) != canon
                    and any(c.isupper() for c in letters[1:])):
                table[words[0]] = canon
    return table


_ABBREVIATIONS = _build_abbreviations()


def _words(text: str) -> list[str]:
    """The folded words of ``text`` (``_raw_words``) with single-token abbreviations of the
    global groups written out, so that "Massive PE" reads as "massive pulmonary embolism"
    and "Type 2 DM" as "type 2 diabetes mellitus"."""
    out: list[str] = []
    for word in _raw_words(text):
        for part in _ABBREVIATIONS.get(word, (word,)):
            if part not in out:
                out.append(part)
    return out


def _build_groups() -> dict[frozenset[str], int]:
    index: dict[frozenset[str], int] = {}
    for number, group in enumerate(GLOBAL_SYNONYMS):
        for name in group:
            words = frozenset(_words(name))
            other = index.setdefault(words, number)
            if other != number:
                raise ValueError(f"the diagnosis name {name!r} is in two synonym groups: "
                                 f"{GLOBAL_SYNONYMS[other][0]!r} and {group[0]!r}")
    return index


_GROUP_OF = _build_groups()


def normalise_diagnosis(text: str) -> str:
    """The normal form of a diagnosis: its folded words without hedges, in their order; for
    a name in a ``GLOBAL_SYNONYMS`` group, the normal form of the group's first name.

    ``normalise_diagnosis("Likely acute PE.") == "pulmonary embolism"``;
    ``normalise_diagnosis("Crohn's disease") == "crohn disease"``. Two texts with the same
    normal form match each other (the converse does not hold: word order differs).

    Args:
        text: a diagnosis as a doctor or a case writes it.

    Returns:
        The normal form; ``""`` when nothing is left (an empty or hedge-only text).
    """
    words = _words(text)
    group = _GROUP_OF.get(frozenset(words))
    if group is not None:
        words = _words(GLOBAL_SYNONYMS[group][0])
    return " ".join(words)


QUALIFIER_WORDS = frozenset({
    "left", "right", "sided", "bilateral", "unilateral", "severe", "mild", "moderate",
    "massive", "submassive", "new", "onset", "newly", "diagnosed", "uncomplicated",
    "complicated", "flare", "symptomatic", "active", "early",
})
"""Words an answer may add to or leave out of a case's name (laterality, severity, onset):
"Left-sided pneumothorax" matches "pneumothorax" and "Massive PE" matches "pulmonary
embolism", but qualifiers must not contradict: the qualifiers of one text must be among
those of the other ("mild aortic stenosis" does not match "severe aortic stenosis")."""

_CAUSE_SPLIT = re.compile(
    r"\s+(?:due\s+to|secondary\s+to|caused\s+by|with|in\s+the\s+setting\s+of|"
    r"complicated\s+by)\s+|\s*[;,]\s*", re.IGNORECASE)
_SIDES_SPLIT = re.compile(r"\s+[-\u2013\u2014]\s+|:\s+")
_EITHER = re.compile(r"\b(?:or|vs|versus)\b", re.IGNORECASE)
_HYPHEN_IN_WORD = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")


def _texts(answer: str) -> list[str]:
    """The texts an answer may be read as: all of it, without parentheses, the text before
    a cause or complication ("X due to Y", "X with Y", "X; Y"), either side of " - " or ": "
    ("Acute coronary syndrome - inferior STEMI"; neither in an answer that hedges between
    diagnoses with "or" or "vs"), each also with hyphens
    inside words joining ("pre-renal" is "prerenal")."""
    texts = [answer]
    bare = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", answer)
    if bare != answer:
        texts.append(bare)
    for text in list(texts):
        if _EITHER.search(text):
            continue
        head = _CAUSE_SPLIT.split(text, maxsplit=1)[0]
        if head != text:
            texts.append(head)
        sides = _SIDES_SPLIT.split(text, maxsplit=1)
        if len(sides) == 2:  # "Acute coronary syndrome - inferior STEMI", "ACS: NSTEMI"
            texts += [side for side in sides if side.strip()]
    for text in list(texts):
        joined = _HYPHEN_IN_WORD.sub("", text)
        if joined != text:
            texts.append(joined)
    return texts


def _candidates(answer: str) -> list[frozenset[str]]:
    """The word sets an answer may be read as (see ``_texts``)."""
    out: list[frozenset[str]] = []
    for text in _texts(answer):
        words = frozenset(_words(text))
        if words and words not in out:
            out.append(words)
    return out


def accepted_word_sets(names: Iterable[str]) -> set[frozenset[str]]:
    """The word sets that match any of ``names``: theirs and those of their global synonym
    groups (each also with hyphens inside words joining)."""
    accepted: set[frozenset[str]] = set()
    for name in names:
        for text in dict.fromkeys([name, _HYPHEN_IN_WORD.sub("", name)]):
            words = frozenset(_words(text))
            if not words:
                continue
            accepted.add(words)
            group = _GROUP_OF.get(words)
            if group is not None:
                accepted.update(frozenset(_words(n)) for n in GLOBAL_SYNONYMS[group])
    return accepted


def _set_matches(words: frozenset[str], accepted: set[frozenset[str]]) -> bool:
    if words in accepted:
        return True
    core, qualifiers = words - QUALIFIER_WORDS, words & QUALIFIER_WORDS
    if not core:
        return False
    return any(name - QUALIFIER_WORDS == core
               and (qualifiers <= name or name & QUALIFIER_WORDS <= qualifiers)
               for name in accepted)


def _alternatives(answer: str) -> list[list[str]]:
    """The readings of a slash answer, each a list of alternatives: word by word
    ("Viral/idiopathic pericarditis" is "Viral pericarditis" and "idiopathic pericarditis")
    and phrase by phrase ("A / B")."""
    if "/" not in answer:
        return []
    readings = [[part for part in re.split(r"\s*/\s*", answer) if part.strip()]]
    match = re.search(r"(\S+)\s*/\s*(\S+)", answer)
    if match:
        left, right = match.span(1), match.span(2)
        readings.append([answer[:left[1]] + answer[right[1]:],
                         answer[:left[0]] + answer[right[0]:]])
    return [r for r in readings if len(r) > 1]


def _answer_matches(answer: str, accepted: set[frozenset[str]]) -> bool:
    if any(_set_matches(c, accepted) for c in _candidates(answer)):
        return True
    return any(all(_answer_matches(alt, accepted) for alt in reading)
               for reading in _alternatives(answer))


def names_match(answer: str, names: Iterable[str]) -> bool:
    """Whether ``answer`` names the same disease as one of ``names`` (the module's rule)."""
    return _answer_matches(answer, accepted_word_sets(names))


def diagnosis_matches(answer: str, case: HasDiagnosis) -> bool:
    """Whether a doctor's answer names the case's correct diagnosis.

    Args:
        answer: the doctor's diagnosis (the text after ``DIAGNOSIS READY:``).
        case: a case (anything with ``diagnosis`` and ``synonyms``).

    Returns:
        True when the answer's word set equals that of the diagnosis, of a synonym of the
        case, or of a global synonym of either (see the module docstring for the rule).
    """
    return names_match(answer, [case.diagnosis, *case.synonyms])


def rank_of_diagnosis(differential: Sequence[str], case: HasDiagnosis) -> int | None:
    """The 1-based rank of the first entry of a ranked differential that matches the case's
    diagnosis, or None: top-k accuracy counts ranks <= k."""
    accepted = accepted_word_sets([case.diagnosis, *case.synonyms])
    for rank, answer in enumerate(differential, 1):
        if _answer_matches(answer, accepted):
            return rank
    return None
