"""loss-report: training logs from any source in one LossLog, judged for convergence.

read.py and sources/ read logs, log.py holds them, analysis.py judges, details.py is the result.
"""
