"""demo: train on the embedded model, diagnose it, reproduce the in-place base bug and catch it."""
