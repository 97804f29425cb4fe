"""Greedy generation over arms (base, adapter, merged) with one copy of the weights.

arms.py plans and runs the arms, decode.py is the greedy loop, metrics.py compares outputs.
"""
