"""Run machinery that knows no attack family: the runner, the run context, the store (atomic,
verified, resumable), the model cache, the environment and progress."""
