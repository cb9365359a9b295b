"""The study design: which runs a params file asks for, and how they are grouped into jobs.
Pure functions of the validated params (no torch), so the pipeline can plan at start-up."""
