"""`make chaos`: a seeded, randomized fault soak of the whole system on the cluster profile of the stack,
and what it needs outside the tests: a Toxiproxy client, a process supervisor, the schedule, the
reconciliation and the report. Above `pipelines/`, beside `bench/`; imports none of the tests
(tests/test_layers.py); the fake API servers it runs are `fakes/`."""
