"""Dead letters: what goes to the dead-letter queue and why."""
