"""The lab's tests use the `small_lab` and `lab` fixtures of tests/conftest.py: the `small`
topology is brought up once per session, every test gets it with no active fault, and the
session ends with the lab torn down and a check that none of its namespaces or processes
remain."""
