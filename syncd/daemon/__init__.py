"""The daemon: wiring the apply loop and the captures, reload, signals, sd_notify, logging."""
