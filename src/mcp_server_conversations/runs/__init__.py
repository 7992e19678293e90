"""Runs of send_message: the runtime (queueing, lifecycle, cancels across processes, the dead-run
sweep, ends held while storage refuses them), the agent loop and its own tools, prompts, memory
compilation and compaction."""
