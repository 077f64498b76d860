"""The clinic scenario; so far its case library.

Modules:
    vocabulary: the normalised vocabularies (tests, symptoms, examination systems,
        specialties) and the functions that map free text onto them.
    diagnosis: diagnosis normalisation and matching (the judge's string rule).
    cases: the case schema, loading and checking case files, the shipped library and the
        measurement rule ``result_of``.
    agentclinic: the importer for AgentClinic-format JSONL files that users bring.
"""
