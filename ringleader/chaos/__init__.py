"""The chaos suite: scenarios that inject faults into a real group of workers and check the
invariants of DESIGN.md against what the workers' tasks recorded (`report`)."""
