"""Readers for logs written by other tools (W&B, MLflow, LLaMA-Factory, axolotl) into a LossLog.

`ftdiag.loss.read.read_loss_log` finds them in a path; each module imports its tool only when used.
"""
