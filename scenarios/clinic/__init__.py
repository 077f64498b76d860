"""The clinic scenario: patients, doctors and tests, from one consultation to a busy hospital
(docs/scenarios/clinic.md).

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
    config, intake, actions, observation, state, memory, rules, decisions, patients, metrics,
        tables: the scenario's parts (its YAML, who comes and when, its action schema, what
        doctors see, what a run changes, what doctors learn, the rule and language-model
        doctors, language-model patients, its measures, its tables).
    scenario: ``ClinicScenario``, which plugs them into the engine.
"""

from .scenario import ClinicScenario

__all__ = ["ClinicScenario"]
