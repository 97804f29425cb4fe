"""doctor: loss-report → check-adapter → ab-test → merged check on one run, causes ranked."""
