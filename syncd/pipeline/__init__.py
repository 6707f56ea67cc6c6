"""The consume loop: batching, settling and acknowledging deliveries, and the crash-loop ledger."""
