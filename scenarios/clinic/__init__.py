"""The clinic scenario (in progress): its parts, tested on their own; the scenario class that
plugs them into the engine comes next.

Modules:
    vocabulary: the normalised vocabularies (tests, symptoms, examination systems,
        specialties) and the functions that map free text onto them.
    diagnosis: diagnosis normalisation and matching (the judge's string rule).
    cases: the case schema, loading and checking case files, the shipped library and the
        measurement rule ``result_of``.
    agentclinic: the importer for AgentClinic-format JSONL files that users bring.
    knowledge: the rule doctor's table of symptom and test likelihoods per diagnosis.
    doctor: the batched Bayesian rule doctor (information gain, confidence, biases).
    hospital: arrivals, triage, the queue, doctors' capacity and specialties, and the
        hospital's waiting-time and utilisation measures.
    protocol: the AgentClinic protocol of language-model doctors on one action schema.
    persona: PatientSim persona dimensions and what they do to a patient's answers.
"""
