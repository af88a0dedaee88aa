"""HALOC's differentiable rank search (Eq. 6-9) on simulated ASIC targets."""
