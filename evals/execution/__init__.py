"""Running evals: queued and immediate runs, continuous evaluation, CI batches, drift,
scores sent back to the source, the operations dashboard.
"""
