"""ab-test: base vs adapter on the same titles, greedy.

local.py runs both arms here; served.py and client.py ask a server (ab-test --endpoint).
"""
