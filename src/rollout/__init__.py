"""Domain core of the Legi-PIN rollout: exports, PINs, state, messages, delivery.

Nothing in this package knows of Prefect or the command line; `flows/` orchestrates it.
"""
