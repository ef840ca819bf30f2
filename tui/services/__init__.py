"""Services: engine client, run state, GPU probe, series buffers. No widget code here."""
