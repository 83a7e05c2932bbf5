"""STEVE: Stochastic Ensemble Value Expansion (Buckman et al., NeurIPS 2018)."""
